"""HTTP plumbing the channels share: reading requests (inputs), the JSON shapes (serialize), error
responses and the app's runtime (http), the API key, the inbound spool kept while the database
is down, and the signed webhook sender. No use case lives here."""
