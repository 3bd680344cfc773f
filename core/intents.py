"""What a buyer's reply means (§6): a rule-based, pure intent classifier and decline-reason reader.

How a text is read
------------------
1. Normalise: Unicode NFKC, emoji to words (👍 👌 ✅ → "yes", 👎 ❌ → "no", 🛑 → "stop",
   📞 → "call"), casefold, accents dropped ("sí" → "si"), apostrophes dropped ("don't" → "dont",
   "we're" → "were"), hyphens inside words joined ("opt-out" → "optout"), "%" → "percent",
   amounts kept whole ("$499.00" → "499", "4,800" → "4800").
   Sentence punctuation (, . ! ? ; :) becomes a clause break that no phrase reaches across, so
   "no, need to check with my boss" is not "no need". Every other symbol is a space; a message
   typed letter by letter ("S T O P", "s.t.o.p") is joined. A "?" marks the text as a question.
2. Each word is put in canonical form: a known word stays; a stretched word is squeezed
   ("yesss" → "yes", "stopppp" → "stop"); a short-hand is expanded ("pls" → "please",
   "u" → "you"); an unknown word of 4+ letters is corrected to the keyword it is one
   Damerau-Levenshtein edit from ("confrim" → "confirm", "upgarde" → "upgrade", "mcuh" → "much").
   Shorter words must match exactly, and common English words are never "corrected".
   Phrases that only look negative ("no worries", "no problem", "why not", "good to go",
   "no, go ahead", "no objections", "makes sense given how busy we are") are read as "ok".
3. The canonical text is matched against one keyword table per intent, in the precedence
   order below; the first intent whose rule matches wins.

Precedence (first match wins)
-----------------------------
 1. stop      a carrier opt-out keyword as the whole message (STOP, STOPALL, UNSUBSCRIBE, CANCEL,
              END, QUIT, OPTOUT, REVOKE; any case, punctuation, emoji, "please"/"now" around it),
              or as a clause of its own ("not interested. stop", "yes STOP", "no, cancel")
 2. start     START / UNSTOP as the whole message
 3. help      HELP / INFO as the whole message
 4. stop      a revocation in plain words: "stop texting me", "don't text me", "unsubscribe me",
              "remove me from this list", "leave me alone", "no more messages", "no more upgrade
              offers", "wrong number", "don't have anyone text me", "cancel these texts". An
              opt-out is honoured before anything else in the text ("not interested, stop
              texting" is stop; so is "don't text me, call me": the conservative reading). A
              stop-family word inside a sentence that is not about messages is not an opt-out
              ("can I stop paying for extra seats?" is a question, "we're cancelling our
              account" a decline).
 5. start     "resubscribe", "start texting me again", "opt me back in", "add me back" — unless
              negated ("don't add me back")
 6. help      "what is this?", "who is this?" as the whole message; anywhere in the text, a
              question about the messages themselves: "why am I getting these texts",
              "is this a scam?", "how do these messages work", "what company is this from?"
 7. callback  "call me", "give me a call", "ring me" — unless negated ("don't call me" is a stop)
 8. discount  "any discount?", "promo code", "cheaper if annual?", "20% off", "waive the charge"
 9. human     "talk to a person", "agent", "real human", "is this a bot?", "human please",
              "have someone from sales email me", "who can I talk to?" — but "does scale come
              with an account manager?" asks about the plan (question_features)
10. question_downgrade  "can I downgrade later", "go back to starter", "am I locked in?" ("back
              down" only in a question: "usage will drop back down" is a decline)
11. question_proration  "charged today", "is it prorated", "when am I billed", and a question
              about an amount: "why is it $105 today?", "what's the $105 for", "how is the 105
              calculated", "when will the $499 come out", "when does it start?"
12. question_features   "what do I get", "what's included", "does growth have sso?", a limit or
              more seats ("what's the user limit", "can I add more users?"), "does growth come
              with …", and last, any other question about a plan ("can I use my number on
              growth?")
13. question_price      "how much", "what's the price?", "is it cheaper", "the total", "per
              seat"; tax is a price question even beside "include" ("does the price include tax?")
14. confirm   an explicit confirmation only (see below)
15. decline   "no", "not now", "too expensive", "we're leaving", "we're cancelling", "not paying
              that", "keep us on starter" (a statement), "usage will drop back down", or an
              affirmative action that is negated ("don't upgrade", "I can't confirm yet")
16. affirm    "yes", "sure", "let's do it", "upgrade me", "move us to growth", "put us on growth",
              👍 — never a question that has no yes-word in it: "what's the upgrade?", "should I
              upgrade?" and "upgrade?" ask (unknown), "how do I upgrade?" and "can you upgrade
              us?" ask for it (affirm)
17. unknown   everything else, the empty text included

So escalation requests beat questions ("no, call me instead" is callback; "can I get a discount?
otherwise no" is discount), questions beat yes/no ("yes but how much" is question_price), and a
"no" beats a "yes" ("sure, but not now" is decline). The more specific question wins over the
general one: "how much would I be charged today" is question_proration, not question_price.
A counter-offer is a discount: the offered price comes back with "at" ("Growth at $499"), another
one with "for"/"if"/"max" ("I'd upgrade for $399", "yes if it's $399", "we'd pay 400 max").

Price topics ("price", "cost", "expensive") count as a question only with a question cue (a "?",
a wh-word, or an opening "is/does/can/would/confirm…"), so "the price is too high" is a decline.

What counts as confirm
----------------------
``confirm`` is predicted only for an explicit confirmation: a statement (no "?") that contains
the word confirm/confirmed/confirming (typos included: "confrim", "comfirm") and nothing but
politeness, yes-words, the plan words, the card and the offered price echoed the way the offer
says it ("yes confirm", "I confirm the upgrade to growth at $499", "confirmed, charge the card",
"Confirmed 👍"). Such a text asks nothing, so its echoed words ("bill the card", "$499 a month")
are not read as a question. A bare amount ("confirm $399") or "for $399" may be a counter-offer
and is not a confirmation: the classifier does not know the offered price. Anything else with
"confirm" in it is read by the other rules: "don't confirm" and "I can't confirm yet" are
decline, "can you confirm the price?" is question_price, a bare "confirm?" is unknown. A bare
"yes" is affirm: turning a yes in ``awaiting_confirmation`` into a confirmation is the state
machine's job, not the classifier's. START_KEYWORDS deliberately leaves out YES (which some
carriers treat as opt-in) for that reason.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from core.intent_model import IntentModel


class Intent(enum.StrEnum):
    """What a buyer's message asks for (§6); the names are fixed."""

    AFFIRM = "affirm"
    CONFIRM = "confirm"
    DECLINE = "decline"
    QUESTION_PRICE = "question_price"
    QUESTION_FEATURES = "question_features"
    QUESTION_PRORATION = "question_proration"
    QUESTION_DOWNGRADE = "question_downgrade"
    HUMAN = "human"
    DISCOUNT = "discount"
    CALLBACK = "callback"
    STOP = "stop"
    START = "start"
    HELP = "help"
    UNKNOWN = "unknown"


class DeclineReason(enum.StrEnum):
    """Why a buyer said no (§6); a LEAVING reason escalates to a CSM."""

    PRICE = "price"
    TIMING = "timing"
    NOT_NEEDED = "not_needed"
    LEAVING = "leaving"
    OTHER = "other"


# Carrier keywords, matched against the whole message (upper case here, any case in a message).
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                           "REVOKE"})
# No YES: a bare "yes" is an answer in the conversation, never a re-subscription.
START_KEYWORDS = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

# A clause break (",", ".", "!", "?", ...) is kept as this token: no phrase reaches across one.
_BREAK = ","

# Words that may surround a keyword and still leave it "the whole message".
_FILLERS = frozenset({"please", "thanks", "thank", "you", "now", "just", "ok", "okay", "asap",
                      "all", "immediately", "enough", "already", "right", "it", "me", "this",
                      "again", "pls"})
_STOP_FILLERS = _FILLERS | {"yes", "yeah", "so", "i", "said", "say"}
_START_FILLERS = _FILLERS | {"yes"}

# ---------------------------------------------------------------------------------------------
# Keyword tables. A phrase is words separated by spaces: "a|b" is either word, "*" is a gap of up
# to three words, "<num>" is a number, "!a|b" is any one word except those, "^"/"$" anchor the
# phrase to the start/end of the message. Words are canonical (no apostrophes: "dont", "were").
# ---------------------------------------------------------------------------------------------

_MSG_NOUN = ("text|texts|texting|message|messages|messaging|sms|emails|spam|msgs|whatsapps|"
             "offers|promotions|notifications|reminders|alerts|prompts")
_MSG_VERB = "text|message|contact|email|call|sms|whatsapp|ping"

_STOP_PHRASES = (
    ("stop|stopall|quit|cease sending|texting|messaging|contacting|spamming|bugging|bothering|"
     "pestering|asking|calling|emailing|messages|texts"),
    # "stop these texts", "stop sending me the upgrade messages" — not "stop going over our
    # messages limit": only words that point at the messages may stand between
    ("stop|stopall these|those|the|your|ur|all|any|this|sending|getting|receiving? "
     "these|those|the|your|all|any|this|me|us|upgrade|marketing|promo|automated|sales? "
     f"{_MSG_NOUN}"),
    f"cancel|cancelling|canceling * {_MSG_NOUN}",
    f"subscription to|for * {_MSG_NOUN}",
    "^ stop this|these|that",
    f"dont|never {_MSG_VERB} me|us|this|my|again|anymore|here",  # not "you did not email me"
    f"dont|never have|let|want anyone|anybody|someone|somebody|you|them {_MSG_VERB} me|us",
    f"no more {_MSG_NOUN}|contact|contacting", f"no more !than * {_MSG_NOUN}",
    "wrong number|person $", "wrong number|person !of", "not the right person",
    "unsubscribe", "optout", "opt me out", "remove me|us $", "remove me|us from|please",
    "take me|us off",
    f"dont want|need * these|those|your|any|more {_MSG_NOUN}",
    "remove my|this number",
    "delete my|this number", "lose my number", "off your|this|the|ur list", "leave me|us alone",
    "revoke|revoking|withdraw * consent", "revoke", "dont contact", "dnc",
    f"no longer|never want|wish * {_MSG_NOUN}|contact|contacted|texted|messaged",
    f"stop|quit sending|send * {_MSG_NOUN}", "stop|quit sending|send me|us? these|this|them $",
    "block|blocking this|your|my? number", "^ block|blocking me|us|this|you $",
    # in Spanish, French and Portuguese (accents are dropped before matching)
    "^ para|basta|baja|arret|arrete|arretez|pare|parar|alto $", "darme|dar|darnos de baja",
    "no me|nos * escriban|escribas|manden|mandes|envien|envies|contacten|llamen|molesten",
    "deja|dejen|dejar de * escribir|mandar|enviar|escribirme|mandarme|enviarme|molestar",
    "no mas * mensajes|textos|mensaje|sms", "plus de * messages|sms|textos",
    "cancelar * suscripcion|mensajes",
    "desabonner|desinscrire|desabonnez|desinscrivez", "ne * plus * ecrire|contacter|envoyer",
    "parem|pare * de * enviar|mandar|mensagens", "nao * mande|mandem|envie|enviem * mensagens",
    # Italian, German, Polish, Russian, Chinese, Japanese
    "non * scrivermi|scriverci|contattarmi|contattarci * piu", "disiscrivi|disiscrivimi|disiscrivermi",
    "abmelden|abbestellen", "keine * nachrichten * mehr", "nicht mehr * schreiben|kontaktieren",
    "wypisz|wypisac|wypiszcie", "отписаться|отписать|отпишите|стоп", "停止|退订|取消订阅",
    "配信停止|解除",
)

# Words that, shortly before a stop phrase in the same clause, make it no request to stop:
# "dont unsubscribe me", "if this keeps up I'll unsubscribe", "not saying stop".
_STOP_NEGATORS = frozenset({"dont", "not", "never", "wont", "shouldnt", "didnt", "without",
                            "cant", "if", "unless", "otherwise", "might", "ill", "will", "gonna",
                            "going", "tempted", "before", "need", "said", "nobody",
                            "wouldnt", "neednt", "undo", "ignore", "reverse", "revert",
                            "disregard"})

_START_PHRASES = (
    "resubscribe", "unstop", "subscribe me|us * again", "subscribe again",
    f"start {_MSG_NOUN}|sending * again", "text|message|whatsapp|email me|us again",
    "opt me|us back in", "add|put me|us back",
    "opt back in", "optin", "sign me|us back up", f"get|receive {_MSG_NOUN} again", "^ start again",
    "start again $", "undo|reverse|revert|ignore|disregard my|the|that? * stop|unsubscribe|optout",
    "wieder anmelden", "reactivar|reactiva|reanudar|reativar|recommencer|riattiva",
)

_HELP_PHRASES = (  # whole message only: "what is this charge today?" is a question, not help
    "^ what is this|that $", "^ whats this|that $",
    "^ what is this about $", "^ whats this about $", "^ who is this|that $", "^ whos this $",
    "^ who are you $", "^ who are you guys|people $", "^ who is texting|messaging me $",
    "^ who dis|this $", "^ what is this for $", "^ whats this for $", "^ who gave you my number $",
    "^ ayuda $",
    "^ what company is this $", "^ how did you get my number $", "^ what is this number $",
)
# Names of what the messages are; not "text": "why is the text about a charge?" is the
# message's topic, and "reminders" are a feature.
_SENT_NOUN = "text|texts|message|messages|msgs|sms|whatsapps|offer|offers|emails|spam"
_HELP_TOPIC_PHRASES = (  # about the messages themselves, anywhere in the text
    f"why * getting|receiving|receive|received|get|got|sent|sending|send * {_SENT_NOUN}",
    "why * getting|receiving|receive|received|get|got|sent|sending|send * this|these|that $",
    "why * texting|messaging|contacting|emailing me|us",
    ("is|are this|it|that|these|those|you * "
     "legit|legitimate|genuine|scam|scams|phishing|fraud|spam"),
    (f"didnt|never sign|signed|subscribe|subscribed|optin|ask|asked up? for|to? * "
     f"this|these|{_SENT_NOUN}"),
    "^ who am i talking|speaking|chatting|texting to|with $",
    "this|these|thats|its * looks|seems|sounds like * scam|phishing|fraud",
    "^ legit|scam|phishing|fraud $", "^ this|thats|its|it is? a? scam|fraud|phishing $",
    f"how * these|your|this {_SENT_NOUN}|texting|messaging * work|works",
    f"^ what|whats are? these|the|all|your|with * {_SENT_NOUN} about|for $",
    f"^ what|whats are? these|the|all|your|with * {_SENT_NOUN} $",
    "^ what|which company|business|firm|organization * this|you|me|texting|messaging|from",
    "what|whats|who is? upgrade chat",
)

_CALLBACK_PHRASES = (
    "llamame|llamenme|llamarme|llamenos|llamanos|appelez|appelezmoi|ligue|liguem|anrufen",
    "call|phone|ring me|us", "call me|us back", "call my cell|phone|mobile|number",
    "give me|us a call|ring|buzz|bell|shout", "buzz|bell me|us",
    # "a call" only as something asked for: not a call that happened or one they are on
    ("do|hop|jump|get|have|set|book|schedule|arrange|want|need|like|love|prefer|request|quick|"
     "rather * a call|callback"),
    ("do|hop|jump|get|have|set|book|schedule|arrange|want|need|like|love|prefer|request|rather * a "
     "quick|short|brief call"),
    ("do|hop|jump|get|have|set|book|schedule|arrange|want|need|like|prefer|request|quick|"
     "rather * a phone call"), "phone call please|pls|plz",
    # an order standing alone: "pls call monday morning", "call in 30 min"
    *(f"{start}call|ring|phone at|in|on|around|after|tomorrow|today|tonight|monday|tuesday|"
      "wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|sun|this|"
      "next|back" for start in ("^ ", "please|pls|plz ")),
    ("call|phone|ring the|our|my * office|desk|line|landline|cell|mobile|number|clinic|store|shop|"
     "salon|practice|reception|receptionist|assistant"),
    # on the phone as a way to talk now, not a call that happened ("we spoke on the phone")
    "talk|discuss|chat|speak|go|run|walk|sort * over|on|by the? phone",
    "prefer|rather|easier|better * over|on|by the? phone",
    "telephone|tel me|us", "gimme a call|ring|buzz|bell|shout", "try me|us again|later|back",
    "please|pls|plz|just call|ring|phone $", "^ please|pls|plz call|ring|phone",
    "call|ring|phone me? then|anytime|whenever",
    "can|could|will|would you|someone|somebody|anyone * call", "callback", "call back",
)

# "call" that asks for no call: figures of speech ("call me crazy", "call it a day", "a tough
# call"), taken out before the callback phrases are looked for.
_CALL_IDIOMS = re.compile(
    # the buyer will call someone: "I'll give you a call", "we'll ring you", "let me phone them"
    r"\b(?:ill|i will|we will|let me|im going to|i am going to|we are going to) (?:[^\s,]+ ){0,2}"
    r"(?:call|phone|ring|give (?:you|u|them|him|her) a (?:call|ring|buzz))\b(?: \S+)?|"
    r"\bwell (?:call|phone|ring) (?:you|u)\b|"  # "we'll call you" (read without its apostrophe)
    r"\bcall (?:me|us) (?:crazy|old fashioned|old-fashioned|skeptical|sceptical|paranoid|picky|"
    r"cautious|cheap|whatever you like|when pigs fly)\b|\bcall (?:it|them) (?:a day|quits|even)\b|"
    r"\bwhat (?:do|would) you call\b|\b(?:tough|close|good|bad|hard|judgment|judgement|your|my) "
    r"call\b")

_DISCOUNT_PHRASES = (
    "discount|discounts|discounted|promo|promos|promotion|coupon|coupons|voucher",
    "better|best|special deal|price|offer|rate", "any deal|deals", "deals",
    "cheaper if|with|for * annual|annually|yearly|year|upfront",
    "pay|paying|billed|bill * annually|yearly", "annual plan|billing|pricing|deal",
    "<num> percent off", "<num> off", "percent off|discount", "knock|take * off",
    "waive|waived|waiving", "month|months free", "free month|months",
    "price match", "match it|that|this|them", "match the|their price|quote|offer",
    "better|cheaper quote|offer",
    "wiggle room", "negotiate|negotiable", "lower|reduce * price", "price down", "for less",
    "would|could|can|will you do <num>", "do it for <num>", "cut me|us a deal",
    # a counter-offer: the offered price is echoed with "at", another one named with "for"/"if"
    "upgrade|upgrading|confirm|sign|switch|move|yes|yeah|in|deal for <num>",
    "if its <num>", "if it was|were|is|came|comes|dropped|went * <num>",
    "if its cheaper|less|lower|discounted",
    "if it was|were|is|gets|got|goes|went cheaper|less|lower|discounted|down",
    "you can|could|would|will do|make|go * <num>", "only|just for <num>", "for <num> only",
    "would|wed|id|could pay|spend|go <num>", "<num> max|tops|maximum", "take|accept <num>",
    "give|get|offer|do|make us|me|a * deal|deals",
    ("nonprofit|nonprofits|charity|charities|ngo|education|educational|edu|student|students|"
     "startup|startups|academic|school|schools|church|churches|veteran|veterans|military "
     "pricing|price|prices|rate|rates|discount|discounts|plan|plans|tier|program"),
)

_HUMAN_PHRASES = (
    ("talk|speak|chat to|with someone|somebody|anyone|sales|support|human|humans|person|people|"
     "rep|agent|representative|operator"),
    ("talk|speak|chat to|with a|an|the|your|some|real|actual|live * person|human|rep|"
     "representative|agent|someone|somebody|support|sales|team|people|manager"),
    "real|actual|live person|human|people|agent", "a human|person", "account manager",
    "csm", "my rep", "transfer me|us", "connect me|us with|to", "is this|it a bot|robot|human",
    "are you a bot|robot|human|person", "are you real|human", "get me someone|somebody",
    "^ human|agent|representative|rep|operator|person|humans $", "demo|walkthrough",
    "hablar con", "una persona",
    ("someone|somebody|anyone|person|human|rep|agent|representative * "
     "message|text|email|contact|dm|whatsapp|write|reach|reply me|us"), "reach out to me|us",
    "who * talk|speak|chat to|with", "who * talk|speak|chat $", "who * contact|reach|email",
    "someone|somebody|team|sales|support|rep|agent|person * reach out",
    "someone|somebody|team|sales|support|rep|agent|person * get back to",
)
# Words that, alone with politeness around them, ask for a person ("human please").
_HUMAN_WORDS = frozenset({"human", "humans", "agent", "agents", "representative", "rep",
                          "operator", "person", "someone", "somebody", "sales", "support"})
_HUMAN_FILLERS = _FILLERS | {"a", "an", "real", "live", "actual", "some", "get", "need", "want",
                             "i", "can", "could", "talk", "to", "speak", "with"}
# "does scale come with an account manager?" asks about the plan, not for the person.
_HUMAN_AS_FEATURE = (
    "come|comes with * account manager", "come|comes with * csm|rep|agent|support|person|human",
    "include|includes|included|including|offer|offers|provide|provides * account manager",
    "include|includes|included|including|offer|offers|provide|provides * csm|rep|agent",
)

# Topics that make a question only when the text is a question (see _is_question).
_DOWNGRADE_PHRASES = (
    "downgrade|downgrading|downgraded|downgrades",
    "go|going|switch|switching|move|moving|drop|change|revert|reverting back",
    "back to starter|growth", "revert|reverting|reverse|undo|undoing",
    "cancel|cancelling|canceling|stop * upgrade", "locked|lock|tied in", "lockin",
    "contract|contracts|commitment", "commit to", "doesnt work out",
    "smaller|cheaper|lower|smallest|cheapest|lighter|basic plan|tier|option|version",
    # cancelling the plan later is a question about being locked in, not a decline
    "cancel|cancelling|canceling|quit|leave anytime|whenever|later|any", "month to month",
    "can|could i|we cancel|quit|leave",
)
_DOWNGRADE_TOPICS = ("back down", "drop down")  # "usage will drop back down" is a statement

_PRORATION_PHRASES = (
    "prorate|prorated|proration|prorating|prorata",
    "charged|charge|pay|paying|owe|due|billed|bill|cost * today|immediately|upfront",
    "charged|charge|billed|due now", "charged|charge|billed|due right away",
    "charged|billed|charge twice",
    "double charged|charge|billed", "full|partial month", "rest of the month",
    "billing|invoice date|cycle|period|day", "next cycle|invoice|bill",
    "when * billed|charged|billing|bill|charge",
    "new price|plan|pricing|rate|billing * start|starts|begin|begins|apply|applies|kick",
    ("when * pay|paid|payment|payments|debit|debited|deducted|take|takes|taken|due|invoiced|"
     "invoice|money"),
    "todays|immediate|upfront charge|charges|payment|amount|fee|bill",
    # money already taken: "was I charged?", "did you bill me", "what did I just pay"
    "was|were|been|got|get|did * charged|billed|charge|bill|paid|pay", "charged|billed me|us",
)
_PRORATION_TOPICS = (  # an amount asked about: what it is, how it was worked out, when it is taken
    "<num> today|now|upfront|immediately", "why * <num>",
    "what|whats * <num> for|about|charge|charges|fee|amount|payment|mean $",
    "what|whats is? this|that|the <num> charge|charges|fee|amount|payment",
    "calculated|calculate|calculation|calculating|figured|breakdown", "worked out",
    "come|comes from", "why * charged|charge|billed|billing",
    ("when * <num> * come|comes|go|goes|taken|take|debited|deducted|charged|billed|due|paid|"
     "payment|hit|hits|out"),
    "first payment|charge|bill|invoice|debit",
    "^ what|whats is? the|this|that? <num> $",
    "payment|payments|charge|debit|money|<num> * come|comes|go|goes out|through",
    "work|worked|working|figure|figured out * <num>|amount|charge|number|price|figure|total",
    "when * start|starts|begin|begins|effect|kick|kicks|active|live|happen|happens",
)

_FEATURE_PHRASES = (  # each already reads as a question
    "what|whats * get", "what|whats * included|include|includes|inclusions",
    "whats in", "what is in", "what * unlock|unlocks|offer|offers|come|comes",
    "what * features|feature", "what else", "difference between", "why * upgrade|switch|move",
    "get more seats|users|integrations", "how many", "tell me more",
    "more info|information|details",
    "send * details|info|information",
    "what happens|changes if|when|once * upgrade|upgrading|switch|move|go",
)
_FEATURE_TOPICS = (  # a question only with a question cue
    "sso|hipaa|baa|audit|workflows|workflow|integrations|integration|features|feature",
    "api access", "include|includes|included|unlock|unlocks", "benefit|benefits",
    "limit|limits|cap|caps|capped|quota|quotas|allowance|allowances|maximum|max|capacity",
    "come|comes with",
    ("growth|scale|plan|tier have|has|support|supports|allow|allows|offer|offers|give|gives|"
     "handle|handles|cover|covers|work|works"),
    "does|will|would|can it|that|this have|has !to",
    ("does|will|would|can it|that|this support|allow|offer|give|handle|cover|integrate|work|"
     "include|come"),
)
# More seats or users, unless the question is what they cost ("can I stop the extra seat charges?").
_SEAT_TOPICS = (
    "more|extra|additional * seats|seat|users|user|numbers|locations|logins|members|agents|staff",
    "add|adding * seats|seat|users|user|numbers|locations|logins|members|agents|staff",
    "about|re|regarding * seats|seat|users|user|logins|members|staff|integrations",
)
# A question about a plan that no other rule took ("can I send mms on growth?") asks what it has.
_PLAN_QUESTION = ("on|with|in|under|onto growth|scale", "on|with|in|under the new|bigger plan")
_PLAN_QUESTION_OPENERS = frozenset({"can", "could", "do", "does", "will", "would", "is", "are",
                                    "should", "did", "any"})
_PRICE_FIRST_TOPICS = ("tax|taxes|vat|gst|hst",)  # "does the price include tax?" is a price

_PRICE_PHRASES = ("how much", "cuanto|cuesta", "gonna cost", "going to cost", "whats * cost|price")
_PRICE_TOPICS = (
    "price|prices|pricing|priced|cost|costs|costing|bill", "monthly", "per|a|each month",
    "total|totals|altogether",
    "per|each user|users|seat|seats|location|locations|number|numbers|agent|agents|year",
    "charges|fee|fees|overage|overages",
    "cheaper",
    "expensive", "save|saving|savings", "pay|paying",
)

_CONFIRM_WORDS = frozenset({"confirm", "confirmed", "confirming", "confirms"})
# Words an explicit confirmation may carry besides the confirm word itself.
_CONFIRM_COMPANIONS = frozenset({
    "i", "we", "im", "hereby", "yes", "yeah", "yep", "yup", "ok", "okay", "sure", "please",
    "thanks", "thank", "you", "the", "upgrade", "upgrading", "it", "to", "growth", "scale", "plan",
    "go", "ahead", "lets", "do", "and", "that", "this", "now", "all", "good", "great", "my", "our",
    # the card and the offered price, echoed: "charge the card", "growth at $499 a month"
    "charge", "bill", "card", "account", "on", "file", "at", "a", "per", "month", "monthly",
    "dollars", "usd",
})

# Verbs of a request for a person, and of a request to be subscribed again, that a negator
# cancels ("don't make me talk to a bot", "don't add me back").
_PERSON_VERBS = frozenset({"talk", "speak", "chat", "message", "text", "email", "contact", "write",
                           "reach"})
_START_VERBS = frozenset({"add", "put", "subscribe", "resubscribe", "start", "opt", "sign",
                          "text", "message", "whatsapp", "email", "get", "receive"})
_PRICE_UNITS = frozenset({"a", "per", "monthly", "month", "dollars", "usd"})
# Negators that cancel a request for a call or a person ("don't call me"); a bare "no" does not.
_REQUEST_NEGATORS = frozenset({"not", "dont", "never", "without", "cant", "wont"})
# Greetings and thanks around a "who is this?" that do not change it.
_POLITE_EDGES = re.compile(r"^(?:(?:hi|hey|hello|sorry|um|ok|please|excuse me)\s)+"
                           r"|(?:\s(?:please|thanks|thank you|sorry))+$")

# Phrases that look negative but say yes; read as "ok" before negation is looked for.
_FALSE_NEGATIONS = ("no more than", "no less than", "no later than", "no matter",
                    "no worries", "no problem", "no prob", "not a problem", "why not",
                    "no brainer", "good to go", "cant wait", "no doubt",
                    "no objection|objections",
                    # a "no" that waves an objection away: "no, go ahead"
                    "^ no|nope|nah , please? go ahead|for", "^ no|nope|nah , please? proceed",
                    # being busy is the reason to upgrade: "makes sense given how busy we are"
                    "given|seeing|considering|with|since how busy|swamped|slammed|hectic|much|many")

_NEGATORS = frozenset({"no", "not", "dont", "never", "cant", "cannot", "wont", "didnt",
                       "doesnt", "shouldnt", "wouldnt", "nope", "nah", "without"})
# Words an affirmative answer turns on; a negator just before one flips the answer.
_ACTIONS = frozenset({"confirm", "confirmed", "confirming", "upgrade", "upgrading", "want",
                      "proceed", "sign", "go", "do", "interested", "need", "sure", "pay",
                      "paying"})

# Decline reasons, most important first (a leaving buyer escalates).
_LEAVING_PHRASES = (
    "leaving", "leave you",
    "switching|switch|moving|move|migrating to !a|an|the|growth|scale|starter|plan|annual|back",
    "competitor|competitors", "another|other|different tool|tools|provider|vendor|platform|app",
    "cancelling|canceling|cancel|closing|close|deleting|delete * account|subscription|plan|service",
    "closing|shutting|close|shut * business|down|doors|shop|company",
    "out of business", "not|wont|dont renew|renewing", "not be renewing", "churn|churning",
    "done with you|your|this", "found * another|better|cheaper", "moving on",
    "were|im|ill|well|will|be|to|gonna|planning|plan cancelling|canceling|cancel",
)
_PRICE_REASON_PHRASES = (
    # money only as an obstacle: "we can afford it" and "we have the budget" are no reason
    "expensive|pricey|pricy|costly|overpriced", "cant|cannot|couldnt|not|dont|unable to? afford",
    "afford it|that|this|to? * not|anymore", "no|not|over|outside|beyond|exceeds|blow|blows * budget", "out of * budget",
    "budget|budgets * tight|cut|cuts|frozen|freeze|gone|spent|maxed|limited|small", "too much",
    "price|prices|cost * high|steep", "justify * cost|price|spend|expense",
    "no|not enough|tight|short|low * money|cash", "money|cash * tight|short|low",
    "is a lot|lots", "a lot for us", "not worth * money|price|cost",
    "cheaper elsewhere",
    # short answers to "may I ask why: the price, the timing, or you do not need it?"
    "^ price|cost|costs|pricing|money $", "^ the|its|because price|cost|costs|pricing $",
    "because of price|cost|pricing", "because of the price|cost|pricing",
    "not|never|wont|cant|dont|cannot|refuse to? pay|paying",
    "pay|paying|spend|spending that|so much",
    "no way * pay|paying|spend|spending", "not at|for <num>",
)
# Staying where they are; a decline only as a statement ("can we stay on starter?" asks).
_STAY_PHRASES = (
    ("keep|keeping|leave|stay|staying|stick|sticking|remain|remaining * "
     "on|with|at starter|current|what"),
    "keep|keeping starter|current|our|what",
)
# The usage that set off the offer will not last: a reason not to upgrade, not a downgrade question.
_USAGE_DROP = (
    ("usage|volume|traffic|demand|messages|texts|activity|sending * "
     "drop|drops|dropping|down|normal|settle|settles|settling|slow|slows|slowing|decrease|lower"),
    "back to normal|usual", "normal|usual levels",
)
_NOT_NEEDED_PHRASES = (
    "dont|not|no need", "not needed", "no use for", "dont|not|never|barely|rarely|wouldnt use",
    "not using", "never use", "starter is fine|enough|plenty|ok|good",
    "fine|happy|good on|with|where starter|our|what|the|current|we",
    "were good|fine|set", "we are good|fine|set", "all set", "im|were good|fine $",
    "im|were good|fine thanks|thank",
    "enough for us", "works for us", "not for us", "everything|all we need",
    "dont see the value", "no value", "dont want more", "wont|wouldnt|shouldnt need",
    ("current|existing|present plan|one|setup|tier|package * "
     "fine|enough|plenty|good|ok|okay|works|work|suits|job|trick"),
    "what|plan we have|got * fine|enough|plenty|good|ok|okay|works|work|suits|job|trick",
    "starter works|does|suits|covers",
    *_STAY_PHRASES,
    *_USAGE_DROP,
    "one|once off", "oneoff|fluke|blip|anomaly|outlier", "just|only|was a? spike|peak|rush",
)
_TIMING_PHRASES = (
    "not now|yet|today|ready", "not right now", "not at the moment", "not at this time",
    "later",
    "not this|that week|month|quarter|year|time",
    "next week|month|quarter|year|cycle|time|spring|summer|fall|autumn|winter",
    "few|couple * weeks|months", "busy|swamped|slammed|hectic", "another time|day",
    "after the holidays|launch|busy", "check|circle|come back", "revisit", "try * again",
    "ask * again|later", "yet", "think about it", "think it over", "let me think", "need to think",
    "hold off", "hold on",
    "in january|february|march|april|may|june|july|august|september|october|november|december",
    "maybe next", "some other time", "down the road", "not the right time", "bad time",
    "get back to you|me", "circle back",
    "^ timing $", "^ the|bad|because timing $", "timing * bad|off|wrong", "because of the timing",
)
_DECLINE_PHRASES = (
    "no|nope|nah|nay|noway|nty", "not interested", "no interest", "no gracias",
    "^ pass $", "ill|well|i|gonna pass", "going to pass", "take a pass", "dont think so",
    "dont|wont|not|never upgrade", "not going to upgrade",
    "dont want", "decline|declined|declining",
    "with * boss|finance|manager|partner|cfo|ceo|cofounder|accountant|legal|procurement",
    "check with", "run it by", "ask my|our boss|manager|partner|team|finance",
    "maybe later", "sounds|looks good|great|nice|interesting but", "^ not for", "^ never|not $",
    "decision maker", "absolutely|definitely|certainly|surely|course not",
    "not my call|decision", "let me talk|check|discuss|run", "talk|check with|to my|our",
    "cancel|cancelled|cancelling|canceling",
)

_AFFIRM_PHRASES = (
    ("yes|yess|yep|yup|yeah|yea|ya|yah|yas|ye|sure|ok|okay|alright|absolutely|definitely|"
     "certainly|agreed|perfect|si|dale|claro|oui|ja|affirmative"),
    "^ y|k|kk|great|cool|fine|deal $", "of course", "sounds|looks good|great|perfect",
    "makes sense", "lets do it|this", "lets go|upgrade", "do it", "go ahead|for",
    "upgrade|upgrading",
    "sign me|us up", "im|were in", "count me|us in",
    "how|where do|can i|we confirm|upgrade|proceed",
    "lets do|go * growth|scale|it|this|upgrade", "want * growth|scale|upgrade|it",
    "proceed|approve|approved", "^ go $", "you bet",
    "switch|switching|move|moving|put|bump|go|going * to growth|scale",
    "put|move|switch|bump|get|sign me|us on|onto growth|scale", "its|thats a deal $",
)
# What keeps a question that names an action ("what's the upgrade?") a yes: a yes-word, or
# asking how to say yes ("how do I upgrade?").
_AFFIRM_IN_QUESTION = (
    ("yes|yess|yep|yup|yeah|yea|ya|yah|yas|ye|sure|ok|okay|alright|absolutely|definitely|"
     "certainly|agreed|perfect|si|dale|claro|oui|ja|affirmative"),
    "how|where do|can|should i|we confirm|upgrade|proceed|sign", "go ahead|for", "do it", "lets",
)
_WH_WORDS = frozenset({"what", "whats", "why", "when", "which", "who", "whos", "where", "wheres",
                       "how", "hows"})
# Openers of a question that is not a request: "should I upgrade?" asks; "can you upgrade us?"
# asks for it, but "would it be worth upgrading?" does not.
_NON_REQUEST_OPENERS = frozenset({"should", "is", "are", "does", "did", "has", "isnt"})
_REQUEST_OPENERS = frozenset({"can", "could", "will", "would"})
_NOT_A_REQUEST_SUBJECTS = frozenset({"it", "that", "this", "there"})

_QUESTION_WORDS = frozenset({"how", "what", "whats", "wat", "when", "which", "why", "cuanto",
                             "wondering", "curious"})
_QUESTION_OPENERS = frozenset({"is", "does", "do", "can", "could", "would", "will", "are", "any",
                               "should", "did", "confirm", "tell", "isnt", "hows", "has", "have"})
_LEAD_FILLERS = frozenset({"so", "ok", "okay", "and", "but", "hey", "hi", "hello", "yes", "yeah",
                           "um", "uh", "also", "quick", "question", "please", "just", "then",
                           "well", "sorry", "hmm", "no", "thanks", "oh", "wait", "hold", "on",
                           "actually", "sounds", "good", "great", "cool", "sure", "right"})

# Short-hands people type on phones, expanded before matching.
_ALIASES = {"u": "you", "ur": "your", "r": "are", "plz": "please", "pls": "please",
            "pleas": "please", "thx": "thanks", "ty": "thanks", "tks": "thanks", "wat": "what",
            "wut": "what", "txt": "text", "txts": "texts", "msg": "message", "sms": "sms",
            "ppl": "people", "yrs": "years", "mo": "month", "mth": "month", "okey": "okay",
            "k": "ok", "kk": "ok", "okie": "ok", "oki": "ok", "okk": "ok", "unsub": "unsubscribe",
            "unsubs": "unsubscribe", "cuz": "because", "thru": "through", "w": "with"}
_JOINS = ((r"\bopt out\b", "optout"), (r"\bopt in\b", "optin"), (r"\bstop all\b", "stopall"),
          (r"\bun subscribe\b", "unsubscribe"), (r"\bre subscribe\b", "resubscribe"),
          (r"\bpro rata\b", "prorata"), (r"\bdo not\b", "dont"),
          (r"\bnon profit\b", "nonprofit"), (r"\bupgradechat\b", "upgrade chat"),
          (r"\bun stop\b", "unstop"))

# An emoji of approval is an acknowledgement ("ok"), never the explicit yes that completes a
# confirmation step.
_EMOJI = {"👍": " ok ", "👌": " ok ", "✅": " ok ", "✔": " ok ", "☑": " ok ", "🙌": " ok ",
          "💯": " ok ", "👎": " no ", "❌": " no ", "🚫": " no ", "🛑": " stop ", "⛔": " stop ",
          "🤔": " hmm ", "📞": " call ", "☎": " call ", "📱": " phone "}

# Common English words that must never be "corrected" into a keyword ("then" is not "when").
_COMMON_TEXT = """
a about above actually after again against ago all almost alone along already also always am an
and another any anyone anything anyway anywhere are around as ask asked at away back bad be
because been before being below best better between big bit both boss bring brought but buy by
call called came can card case cause change changed changes check come comes coming content
could cool day days deal dear did different do does doing done door down during each early
easy either else end enough even ever every everyone everything except fact far feel fell felt
few find fine first five for found four free friend from full gave get gets getting give given
go goes going gone good got great had half hand happen happened hard has hate have having he
head hear held hello help her here hers herself hey hi high him himself his hold home hope hour
hours how however i if im in into is it its itself just keep kind knew know known last late later
least less let lets life like likely line little live long look looked looking lost lot lots love
made main make many may maybe me mean meant might mind mine more most move much must my myself
name near need needs never new newer next nice night no none nor not note nothing now number of
off often oh ok okay old on once one only open or order other our ours out over own part past
people per perhaps place plan play please point post put quite quiet rarely rather read ready
real really right said same saw say saying says see seem seen sell send sent set she should show
side since so some something sometimes soon sorry still stuff such suit sure take taken talk
task tell term test than thank thanks that the their them then there these they thing things
think thinks this those though thought three through time times to today told too took tour
toward try trying turn two under until up upon us use used uses using very want wanted wants was
watch way we week weeks well went were what when where whether which while who whole whom whose
why will willing wish with within without wonder word words work worked works would wrote yeah
year years yes yet you your yours yourself zero account accounts amount app apps business
company data email invoice invoices login password payment product service support team user
morning afternoon evening tonight tomorrow yesterday monday tuesday wednesday thursday friday
saturday sunday driving traveling travelling appreciate honestly probably looking tiny weather
game reset working trial soon sale sales spending ending steady lead weak seek gold sold told
bold cold mode come came cell tall fall walk wave wait wall gone bone tone main mane hour four
pour sour fast cost coast host most lost mist list lust lest legs bets gets jets nets sets
swapped content expert contacts customers clients patients
along atone clone prize pride prom proto rice slice smart stare stark
started smarter starters store story storm stomp step shop stoop atop top stool spot slop
"""
_COMMON_WORDS = frozenset(_COMMON_TEXT.split()) | frozenset(
    # number words are never "corrected" ("nine" is not "nice"): a call's transcript says prices
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand oh".split()) | frozenset(
    # what the buyer did, not what they ask: "I unsubscribed by mistake" is no opt-out
    "unsubscribed stopped opted cancelled canceled confirmed revoked removed ended option "
    "options optional".split())


@dataclass(frozen=True)
class _Reading:
    """A normalised message: its canonical words, their text, and whether it asks something."""

    words: tuple[str, ...]
    text: str
    asks: bool  # a "?" or a question cue (a wh-word, an opening "is/does/can/...")
    has_question_mark: bool


# A pause: the buyer neither agrees nor declines; wants time, or to ask someone first.
_HOLD_PHRASES = (
    ("let|lemme me|us? think|check|ask|talk|discuss|look|run|review|sleep|see|circle|get|confirm|"
     "sort|figure|speak|chat|consult|mull|wait|double"),
    "give|gimme me|us * day|days|week|weeks|minute|minutes|min|mins|sec|second|bit|while|time|moment",
    "think about|over|on", "thinking about|over|on|it", "sleep on", "mull", "need|needs * think",
    "need|want|have|got|gotta * check|ask|talk|discuss|run|review|consult|confirm|clear|verify",
    ("ask|check|talk|speak|discuss|confirm|consult|clear|run * with|by|to * wife|husband|partner|"
     "partners|boss|team|finance|accountant|cfo|ceo|owner|owners|manager|cofounder|board|office|"
     "bookkeeper|spouse|director|doctor|dentist|broker|colleague|colleagues"),
    ("will|ill|gonna|going|let * look|check|review|think|decide|revisit|come back|get back|"
     "circle back|let you know|follow up|sit down"),
    "get|circle|come back to you|on", "let you know", "keep you posted", "hold off|on|tight",
    "not sure|decided yet", "not sure $", "havent decided", "undecided", "on the fence",
    "maybe|possibly|perhaps later|soon|tomorrow|next|in|after", "^ maybe|possibly|perhaps $",
    "later today|tonight|tomorrow", "look|looking at it|this later|tonight|tomorrow",
    "need|needs|want some|more time", "in a bit|while", "busy * right now|rn|today|atm",
    "cant|can not|cannot decide|answer|say * now|yet|today", "one sec|second|moment|min",
    "^ hmm|hmmm|hm|umm $",
    # a yes put off, or made conditional: "yes next month", "yes if my boss agrees"
    ("^ yes|yeah|yep|sure|probably|confirm * next|later|tomorrow|tonight|monday|"
     "tuesday|wednesday|thursday|friday|january|february|march|april|may|june|july|august|"
     "september|october|november|december|q1|q2|q3|q4"),
    "^ yes|yeah|yep|sure|probably * if|once|after|assuming|provided|pending",
)
# A plain no, which a hedge beside it does not soften into a pause ("not now, maybe in Q1").
_PLAIN_NO = ("^ no|nope|nah|pass $", "^ no|nope|nah ,", "not interested", "no thanks|thank",
             "^ not now|today|this|yet", "not right now", "^ no|nope|nah not")
# Words an explicit yes may carry: a yes-word with politeness and "go ahead" around it.
_YES_WORDS = frozenset({"yes", "yess", "yep", "yup", "yeah", "yea", "ya", "yah", "yas", "si",
                        "affirmative", "confirm", "confirmed", "confirming", "confirms"})
# No plan names, no "move/switch/off/in/from": "yes, move us to starter" and "yes in a month"
# are not a yes to this offer today; numbers only as the offer says its figures ("at $499",
# "$499 a month", "$105 today"), which other_amount_named then checks role by role.
_YES_COMPANIONS = frozenset({
    "please", "thanks", "thank", "you", "go", "ahead", "do", "it", "proceed", "absolutely",
    "definitely", "lets", "ok", "okay", "sure", "and", "so", "that", "is", "correct", "right",
    "upgrade", "upgrading", "us", "me", "to", "the", "plan", "i", "we", "charge", "card", "now",
    "all", "good", "great", "perfect", "sounds", "exactly", "of", "course", "indeed", "sir",
    "maam", "agreed", "mam", "thats", "this", "at", "a", "per", "month", "monthly", "dollars",
    "usd", "bill", "on", "file",
    # the figures shown, agreed to: "yes, $105 today is fine", "yes, the $350 difference is ok"
    "fine", "difference", "today", "works",
})
# Thanks and acknowledgements with nothing else in them.
_THANKS_WORDS = frozenset({"thanks", "thank", "you", "much", "so", "very", "appreciate", "it",
                           "great", "cool", "awesome", "perfect", "ok", "okay", "got", "noted",
                           "nice", "amazing", "lovely", "cheers", "gracias", "merci", "a", "lot",
                           "bunch", "again", "many", "wonderful", "excellent", "good", "all",
                           "set", "done", "sweet", "have", "day", "night", "understood"})
# Words that make thanks an acknowledgement too ("ok thanks", "great thanks").
_ACKNOWLEDGING = frozenset({"ok", "okay", "great", "perfect", "cool", "got", "awesome", "good",
                            "sounds", "nice", "sweet", "excellent", "wonderful", "amazing"})
# "are you a bot?", "is this a real person?", "am I talking to a human?"
_BOT_QUESTION = re.compile(
    r"(?:^|\b)(?:are you|r you|is this|is it|is that|am i (?:talking|speaking|chatting|texting|"
    r"messaging) (?:to|with)|this is|you are|youre|are these|is someone|is anyone)"
    r"(?: (?:a|an|just|even|actually|really|like|some|automated|real|live|actual))*"
    r" (?:bot|robot|ai|machine|computer|automated|automatic|auto|chatbot|human|person|real|"
    r"people|program|script|recording|answering machine)\b")


@dataclass(frozen=True)
class Understanding:
    """What the conversation needs to know about a reply, beyond its intent.

    `hold`: a pause ("let me ask my wife", "yes but give me a day"): nothing is done, no decline
    recorded. `explicit`: may complete a confirmation step: the confirm word, or a yes-word
    standing alone with politeness around it ("yes", "yes please"); an acknowledgement ("ok",
    "k", "👍", "sounds good") is not. `asks_if_bot`: "are you a bot?" (answered truthfully).
    `thanks`: thanks or an acknowledgement and nothing else. `confidence`: how sure the reading
    is (1.0 for a rule; the model's probability otherwise); `sure`: whether to act on it."""

    intent: Intent
    reason: DeclineReason | None = None
    hold: bool = False
    explicit: bool = False
    asks_if_bot: bool = False
    thanks: bool = False
    confidence: float = 1.0
    sure: bool = True  # False: the model's reading, not sure enough to act on; ask instead


def understand(text: str, model: IntentModel | None = None) -> Understanding:
    """Read `text`: its intent, whether it is a pause, an explicit yes, a question whether the
    bot is a person, or just thanks.

    The rules read first; STOP, START, CONFIRM and HELP found by the rules stand. With a
    `model` (handed over by the application), which sees the words and the rules' reading, the
    model's reading wins — but it turns a reading of the rules into STOP, START or CONFIRM
    never, only one the rules left unknown. A reading of the model's own is `sure` (acted on)
    from ASK_BELOW up, and never when it is STOP, START or CONFIRM, or AFFIRM without a
    yes-word: then the bot asks one short question instead."""
    reading = _read(text)
    words = reading.words
    rules, label = _rules_label(reading)
    confidence, sure = 1.0, True
    if model is not None and words and rules not in _RULES_ONLY and rules != Intent.HELP:
        guess = model.predict(words, reading.has_question_mark, (f"rules:{label}",))
        if guess.label != label and (label in _OPEN_TO_ANY or guess.label not in _RULES_ONLY):
            label, confidence = guess.label, guess.probability
            sure = guess.probability >= ASK_BELOW and _may_act_on(label, guess.probability,
                                                                  reading)
        else:
            confidence = guess.of(label)
    hold = label == HOLD
    intent = Intent.UNKNOWN if hold else Intent(label)
    plain = [w for w in words if w != _BREAK]
    bot = bool(_BOT_QUESTION.search(" ".join(plain)))
    # Explicit: the rules' confirmation (a statement, see _is_explicit_confirmation), or a
    # yes-word standing alone with politeness around it ("yes is that right" asks: not one).
    # Never from the model: the rules must have read a yes or a confirmation themselves.
    explicit = not hold and not reading.has_question_mark and (
        rules == Intent.CONFIRM and intent == Intent.CONFIRM
        or (rules in (Intent.AFFIRM, Intent.CONFIRM) and intent in (Intent.AFFIRM, Intent.CONFIRM)
            and not reading.asks and bool(_YES_WORDS.intersection(plain))
            and all(w in _YES_WORDS or w in _YES_COMPANIONS
                    or (w.isdigit() and _states_a_figure(plain, i))
                    for i, w in enumerate(plain))))
    thanks = (intent in (Intent.UNKNOWN, Intent.AFFIRM) and not hold and bool(plain)
              and all(w in _THANKS_WORDS for w in plain)
              and bool({"thanks", "thank", "appreciate", "cheers", "gracias", "merci"}
                       .intersection(plain)))
    if thanks and not _ACKNOWLEDGING.intersection(plain):
        intent = Intent.UNKNOWN  # thanks alone; "ok thanks" acknowledges (affirm), politely
    reason = _decline_reason(reading, model) if intent == Intent.DECLINE else None
    return Understanding(intent, reason, hold=hold, explicit=explicit and sure,
                         asks_if_bot=bot, thanks=thanks, confidence=confidence, sure=sure)


def normalised(text: str) -> tuple[tuple[str, ...], bool]:
    """The canonical words the rules and the model read, and whether the text has a "?"."""
    reading = _read(text)
    return reading.words, reading.has_question_mark


def model_input(text: str) -> tuple[tuple[str, ...], bool, tuple[str, ...], tuple[str, ...]]:
    """What the models read of `text`, as `understand` hands it to them: the canonical words,
    the "?", the intent model's cues (the rules' reading) and the reason model's (the rules'
    reason). scripts/train_intents.py trains on exactly this."""
    reading = _read(text)
    _, label = _rules_label(reading)
    return (reading.words, reading.has_question_mark, (f"rules:{label}",),
            (f"rules:{_reason(reading)}",))


def _rules_label(reading: _Reading) -> tuple[Intent, str]:
    """The rules' intent, and their label: the intent, or HOLD for a pause the rules see in a
    yes, a no or an unclear reply."""
    rules = _rules_intent(reading)
    hold = rules in (Intent.AFFIRM, Intent.CONFIRM, Intent.UNKNOWN, Intent.DECLINE) \
        and _is_hold(reading)
    return rules, HOLD if hold else str(rules)


def _states_a_figure(words: list[str], i: int) -> bool:
    """A number said the way the offer says a figure: "at 499", "499 a month", "105 today"."""
    after = words[i + 1] if i + 1 < len(words) else ""
    return (i > 0 and words[i - 1] == "at") or after in _PRICE_UNITS or after in ("today", "now")


def _may_act_on(label: str, probability: float, reading: _Reading) -> bool:
    """Whether the model's own reading may be acted on: never a consent grant or a
    confirmation (the bot asks "Reply START / CONFIRM"), never a yes without a yes-word; a stop
    only when the model is very sure and nothing in the text negates a stop word; a no never
    (the rules must see it: it closes the offer for 30 days)."""
    if label in (Intent.START, Intent.CONFIRM):
        return False
    if label == Intent.STOP:
        return probability >= MODEL_STOPS_FROM and not _negated_stop_mention(reading)
    if label == Intent.DECLINE:  # a no closes the offer and starts a 30-day cooldown: only
        return False             # one the rules see ("we can afford it" once read as one)
    return label != Intent.AFFIRM or _any(_AFFIRM_PHRASES, reading.text)


def _negated_stop_mention(reading: _Reading) -> bool:
    """A stop word or phrase that a negation or condition just before it turns around ("I never
    said stop", "dont stop", "no need to stop the messages")."""
    keywords = {k.lower() for k in STOP_KEYWORDS}
    for clause in _clauses(reading.words):
        for i, word in enumerate(clause):
            if word in keywords and (_STOP_NEGATORS | {"no"}).intersection(clause[max(0, i - 4):i]):
                return True
    return any(_stop_phrases_in(reading))


def _is_hold(reading: _Reading) -> bool:
    """A pause, unless it says no plainly ("no, not now"): hedges are neither yes nor no."""
    if not _any(_HOLD_PHRASES, reading.text):
        return False
    return not _any(_PLAIN_NO, reading.text)


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------

def classify(text: str, model: IntentModel | None = None) -> Intent:
    """The buyer's intent in `text`, by the precedence documented at the top of this module;
    with a `model`, the rules and the model together (see `understand`). A pause ("let me ask
    my wife") is UNKNOWN here: `understand` says it is one.

    Pure and deterministic; never raises on any string (the empty text is UNKNOWN).
    """
    return understand(text, model).intent


# Labels the model may give beyond the intents.
HOLD = "hold"
# The rules alone decide these: the carrier keywords and revocations, START, HELP, and the
# explicit confirmation. The model never turns a reply into one of them.
_RULES_ONLY = frozenset({Intent.STOP, Intent.START, Intent.CONFIRM})
# Readings of the rules the model may turn into STOP, START or CONFIRM: a yes ("turn the texts
# back on", "charge it"), a no ("I don't want these texts anymore"), a pause, or nothing.
_OPEN_TO_ANY = frozenset({Intent.UNKNOWN, Intent.AFFIRM, Intent.DECLINE, HOLD})
# The model's STOP is acted on from this probability up (a revocation must be honoured at once),
# unless a stop word in the text is negated ("do not stop these"): the bot asks instead.
MODEL_STOPS_FROM = 0.80
# Below this, a reading the rules did not make is not acted on: the bot asks one short question.
ASK_BELOW = 0.60


def _rules_intent(reading: _Reading) -> Intent:
    """The rules' reading (the precedence at the top of this module)."""
    words = reading.words
    if not words:
        return Intent.UNKNOWN
    if any(_whole_message_is(clause, STOP_KEYWORDS, _STOP_FILLERS) for clause in _clauses(words)):
        return Intent.STOP
    if _whole_message_is(words, START_KEYWORDS, _START_FILLERS):
        return Intent.START
    if _whole_message_is(words, HELP_KEYWORDS, _FILLERS):
        return Intent.HELP
    if _asks_to_stop(reading):
        return Intent.STOP
    if _any(_START_PHRASES, reading.text) and not _negated(words, _START_VERBS, _REQUEST_NEGATORS,
                                                             window=4):
        return Intent.START
    if (_any(_HELP_PHRASES, _POLITE_EDGES.sub("", reading.text))
            or _any(_HELP_TOPIC_PHRASES, reading.text)):
        return Intent.HELP
    # "no, call me instead" is a callback, so a bare "no" does not negate a request here.
    if _any(_CALLBACK_PHRASES, _CALL_IDIOMS.sub(" ", reading.text)) and not _negated(
            words, {"call", "phone", "ring"}, _REQUEST_NEGATORS, window=4):
        return Intent.CALLBACK
    if _any(_DISCOUNT_PHRASES, reading.text):
        return Intent.DISCOUNT
    if _asks_for_a_person(reading):
        return Intent.HUMAN
    # An explicit confirmation asks nothing (no "?", no wh-word), so the words it echoes from the
    # offer ("bill the card", "$499 a month") are not read as a question about them.
    confirms = _is_explicit_confirmation(reading)
    question = None if confirms else _question_intent(reading)
    if question is not None:
        return question
    if confirms:
        return Intent.CONFIRM
    # "what if we don't upgrade?" wonders; it does not decline
    if _is_decline(reading) and not (reading.has_question_mark and _WH_WORDS.intersection(words)
                                     and not _any(_PLAIN_NO, reading.text)):
        return Intent.DECLINE
    if _any(_AFFIRM_PHRASES, reading.text) and not _asks_rather_than_agrees(reading):
        return Intent.AFFIRM
    return Intent.UNKNOWN


def decline_reason(text: str, model: IntentModel | None = None) -> DeclineReason:
    """Why a decline says no: leaving, then price, then not needed, then timing; else OTHER.
    With a `model`, the model's reading (it sees the rules' as a cue).

    Meant for texts that `classify` reads as DECLINE; any text gets an answer.
    """
    return _decline_reason(_read(text), model)


def _decline_reason(reading: _Reading, model: IntentModel | None) -> DeclineReason:
    """The rules' reason; with a model, the model's, which sees the rules' as a cue."""
    rules = _reason(reading)
    if model is None or not reading.words:
        return rules
    return DeclineReason(model.reason(reading.words, reading.has_question_mark,
                                      (f"rules:{rules}",)).label)


def _reason(reading: _Reading) -> DeclineReason:
    for reason, phrases in _REASONS:
        if _any(phrases, reading.text):
            return reason
    return DeclineReason.OTHER


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

_REASONS = (
    (DeclineReason.LEAVING, _LEAVING_PHRASES),
    (DeclineReason.PRICE, _PRICE_REASON_PHRASES),
    (DeclineReason.NOT_NEEDED, _NOT_NEEDED_PHRASES),
    (DeclineReason.TIMING, _TIMING_PHRASES),
)


def _question_intent(reading: _Reading) -> Intent | None:
    """The question asked, most specific first; None when the text asks none of ours."""
    text, asks = reading.text, reading.asks
    if ((_any(_DOWNGRADE_PHRASES, text) and (asks or not _any(_USAGE_DROP, text)))
            or (asks and _any(_DOWNGRADE_TOPICS, text))):
        return Intent.QUESTION_DOWNGRADE
    if _any(_PRORATION_PHRASES, text) or (asks and _any(_PRORATION_TOPICS, text)):
        return Intent.QUESTION_PRORATION
    if asks and _any(_PRICE_FIRST_TOPICS, text):
        return Intent.QUESTION_PRICE
    about_price = _any(_PRICE_PHRASES, text) or (asks and _any(_PRICE_TOPICS, text))
    if _any(_FEATURE_PHRASES, text) or (asks and _any(_FEATURE_TOPICS, text)):
        return Intent.QUESTION_FEATURES
    if asks and not about_price and _any(_SEAT_TOPICS, text):
        return Intent.QUESTION_FEATURES
    if about_price:
        return Intent.QUESTION_PRICE
    if _opener(reading.words) in _PLAN_QUESTION_OPENERS and _any(_PLAN_QUESTION, text):
        return Intent.QUESTION_FEATURES
    return None


def _asks_to_stop(reading: _Reading) -> bool:
    """A revocation in plain words that nothing just before it negates or makes conditional:
    "no thanks. dont unsubscribe me tho" and "if this keeps up I'll unsubscribe" are not
    opt-outs; "don't text me" is one (there the negation is the request itself)."""
    return any(not negated for negated in _stop_phrases_in(reading))


def _stop_phrases_in(reading: _Reading) -> Iterator[bool]:
    """For each stop phrase in the text, whether a negator or condition within the three words
    before it, in the same clause, turns it around."""
    for clause in _clauses(reading.words):
        text = " ".join(clause)
        for phrase in _STOP_PHRASES:
            for match in _PATTERNS[phrase].finditer(text):
                yield bool(_STOP_NEGATORS.intersection(text[:match.start()].split()[-3:]))


def _asks_for_a_person(reading: _Reading) -> bool:
    """A request for a person, not negated ("don't make me talk to a bot" is not one), and not a
    question about a plan that comes with one ("does scale include an account manager?")."""
    words = reading.words
    if _whole_message_is(words, _HUMAN_WORDS, _HUMAN_FILLERS):
        return True
    if not _any(_HUMAN_PHRASES, reading.text) or _any(_HUMAN_AS_FEATURE, reading.text):
        return False
    return not _negated(words, _PERSON_VERBS, _REQUEST_NEGATORS, window=4)


def _asks_rather_than_agrees(reading: _Reading) -> bool:
    """A question that names an action without saying yes: "what's the upgrade?", "should I
    upgrade?". A question is answered before anything is done, so it is never an affirm."""
    if _any(_AFFIRM_IN_QUESTION, reading.text):
        return False
    words = reading.words
    if _WH_WORDS.intersection(words):
        return True
    if not reading.asks:
        return False
    opener = _opener(words)
    if opener in _REQUEST_OPENERS:
        following = words[words.index(opener) + 1:words.index(opener) + 2]
        return bool(_NOT_A_REQUEST_SUBJECTS.intersection(following))
    # "upgrade?" asks; it says yes only with a yes-word ("yes?") or a request ("can you ...?")
    return opener in _NON_REQUEST_OPENERS or reading.has_question_mark


def _is_explicit_confirmation(reading: _Reading) -> bool:
    """A statement made of a confirm word and nothing but yes-words, politeness and plan words;
    or such a statement as its last sentence after others that neither negate, hedge nor ask
    ("ok he's fine with it. confirm")."""
    if reading.has_question_mark or not _CONFIRM_WORDS.intersection(reading.words):
        return False
    words = reading.words
    if all(w in _CONFIRM_WORDS or w in _CONFIRM_COMPANIONS or w == _BREAK
           or _echoes_the_price(words, i) for i, w in enumerate(words)):
        return True
    *before, last = _clauses(words)
    if not before or not _CONFIRM_WORDS.intersection(last) or not all(
            w in _CONFIRM_WORDS or w in _CONFIRM_COMPANIONS or _echoes_the_price(last, i)
            for i, w in enumerate(last)):
        return False
    # What comes before must itself say yes ("ok he's fine with it", "sounds good"): a no, a
    # request, a hedge or anything unclear before "confirm" makes the whole no confirmation.
    for clause in before:
        said = _Reading(clause, " ".join(clause), _has_question_cue(list(clause)), False)
        if (_NEGATORS | _BUT_IF).intersection(clause) or _CONFIRM_WORDS.intersection(clause) \
                or any(w.isdigit() for w in clause) or _is_hold(said) \
                or _rules_intent(said) != Intent.AFFIRM:
            return False
    return True


# Words that make what follows conditional or contrary ("but", "if", "unless", "wait").
_BUT_IF = frozenset({"but", "if", "unless", "wait", "maybe", "though", "tho", "until", "after",
                     "before", "when", "once"})


def _echoes_the_price(words: tuple[str, ...], i: int) -> bool:
    """A number said the way the offer says its price: "at $499", "$499 a month"; a bare "$399"
    or "for $399" may be a counter-offer and is not part of an explicit confirmation."""
    if not words[i].isdigit():
        return False
    after = words[i + 1] if i + 1 < len(words) else ""
    return (i > 0 and words[i - 1] == "at") or after in _PRICE_UNITS


def _is_decline(reading: _Reading) -> bool:
    """A refusal: a no-word, a refusing phrase, a decline reason, or a negated action."""
    if _any(_DECLINE_PHRASES, reading.text) or _negated(reading.words, _ACTIONS):
        return True
    text = reading.text
    if reading.asks:
        for phrase in _STAY_PHRASES:
            text = _PATTERNS[phrase].sub("", text)
    return any(_any(phrases, text) for _, phrases in _REASONS)


def _whole_message_is(words: tuple[str, ...], keywords: frozenset[str],
                      fillers: frozenset[str]) -> bool:
    """True when the message is one or more of `keywords`, with only filler words around them."""
    lowered = {k.lower() for k in keywords}
    core = [w for w in words if w not in fillers and w != _BREAK]
    return bool(core) and all(w in lowered for w in core)


def _clauses(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The words between clause breaks: "not interested. stop" is two clauses."""
    clauses: list[tuple[str, ...]] = []
    current: list[str] = []
    for word in words:
        if word == _BREAK:
            clauses.append(tuple(current))
            current = []
        else:
            current.append(word)
    return [*clauses, tuple(current)]


def _negated(words: tuple[str, ...], targets: set[str] | frozenset[str],
             negators: frozenset[str] = _NEGATORS, window: int = 3) -> bool:
    """True when a negator stands within `window` words before one of `targets`, same clause."""
    for i, word in enumerate(words):
        before = words[max(0, i - window):i]
        if _BREAK in before:
            before = before[len(before) - before[::-1].index(_BREAK):]
        if word in targets and negators.intersection(before):
            return True
    return False


def _neutralise(text: str) -> str:
    """Turn phrases that only look negative ("no worries", "why not") into a plain "ok"."""
    for phrase in _FALSE_NEGATIONS:
        text = _PATTERNS[phrase].sub("ok", text)
    return text


# ---------------------------------------------------------------------------------------------
# Normalisation and matching
# ---------------------------------------------------------------------------------------------

def _read(text: str) -> _Reading:
    """Normalise `text` into canonical words (see the module docstring, steps 1 and 2)."""
    t = unicodedata.normalize("NFKC", text)
    for emoji, word in _EMOJI.items():
        t = t.replace(emoji, word)
    t = unicodedata.normalize("NFKD", t.casefold())
    t = "".join(c for c in t if not unicodedata.combining(c))
    asks = "?" in t or "¿" in t
    t = re.sub(r"['’‘`´]", "", t)
    t = re.sub(r"(?<=\w)-(?=\w)", "", t)
    t = t.replace("%", " percent ")
    t = re.sub(r"(?<=\d)\.\d\d(?!\d)", "", t)  # cents: "$499.00" is 499
    t = re.sub(r"(?<=\d)[.,](?=\d)", "", t)  # "4,800" is 4800, not a clause break
    t = re.sub(r"[,;:.!?¿¡]+", f" {_BREAK} ", t)
    t = re.sub(r"[^\w\s,]|_", " ", t)
    words = _trim_breaks(_spoken_numbers([_canonical(w) for w in _spelled_out(t.split())]))
    joined = " ".join(words)
    for pattern, replacement in _JOINS:
        joined = re.sub(pattern, replacement, joined)
    joined = _neutralise(joined)
    words = _trim_breaks(joined.split())
    joined = " ".join(words)
    return _Reading(tuple(words), joined, asks or _has_question_cue(words), asks)


_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten "
                                     "eleven twelve thirteen fourteen fifteen sixteen "
                                     "seventeen eighteen nineteen".split())}
_UNITS["oh"] = 0
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty "
                                         "ninety".split()) if i >= 2}
_SCALES = {"hundred": 100, "thousand": 1000, "k": 1000}


def _spoken_numbers(words: list[str]) -> list[str]:
    """Numbers said in words, as a phone call's transcript has them, become digits: "four
    ninety nine" is 499, "fourteen ninety nine" 1499, "a hundred and five" 105, "two fifty" 250.
    A lone number word stays a word ("one sec", "no one"), and so does a run that starts with
    "oh"."""
    out: list[str] = []
    i = 0
    while i < len(words):
        j, value = _number_run(words, i)
        if value is None:
            out.append(words[i])
            i += 1
        else:
            out.append(value)
            i = j
    return out


def with_spoken_numbers(text: str) -> str:
    """`text` with numbers said in words written in digits ("yes for four hundred dollars" ->
    "yes for 400 dollars"), everything else kept, for reading amounts out of a transcript."""
    tokens = re.findall(r"[A-Za-z]+|[^A-Za-z\s]+", text)
    return " ".join(_spoken_numbers([t.lower() if t.isalpha() else t for t in tokens]))


def _number_run(words: list[str], start: int) -> tuple[int, str | None]:
    """The end of the number said from `start`, and its digits; (start, None) when there is
    none worth converting (fewer than two number words)."""
    i, tokens = start, []
    if i < len(words) and words[i] == "a" and i + 1 < len(words) and words[i + 1] in _SCALES:
        tokens.append("one")
        i += 1
    while i < len(words):
        w = words[i]
        if w in _UNITS or w in _TENS or w in _SCALES:
            tokens.append(w)
        elif w == "and" and tokens and tokens[-1] in _SCALES and i + 1 < len(words) \
                and (words[i + 1] in _UNITS or words[i + 1] in _TENS):
            pass  # "a hundred and five"
        else:
            break
        i += 1
    if len(tokens) < 2 or tokens[0] == "oh" or tokens[0] in _SCALES:
        return start, None
    if any(t in _SCALES for t in tokens):  # arithmetic: "five hundred", "two thousand five"
        total = current = 0
        for t in tokens:
            if t in _SCALES:
                current = max(current, 1) * _SCALES[t]
                if _SCALES[t] >= 1000:
                    total, current = total + current, 0
            else:
                current += _UNITS.get(t, 0) + _TENS.get(t, 0)
        return i, str(total + current)
    # the way prices are said: "four | ninety nine", "one | oh | five"; (value, open to a unit)
    groups: list[tuple[int, bool]] = []
    for t in tokens:
        if t in _TENS:
            groups.append((_TENS[t], True))  # a tens word, still open to its unit
        elif groups and groups[-1][1] and 0 < _UNITS[t] < 10:
            groups[-1] = (groups[-1][0] + _UNITS[t], False)
        else:
            groups.append((_UNITS[t], False))
    return i, "".join(str(value) for value, _ in groups)


def _spelled_out(words: list[str]) -> list[str]:
    """Join a message typed one letter at a time: "S T O P" and "s.t.o.p" are "stop"."""
    letters = [w for w in words if w != _BREAK]
    if len(letters) >= 3 and all(len(w) == 1 and w.isalpha() for w in letters):
        return ["".join(letters)]
    return words


def _trim_breaks(words: list[str]) -> list[str]:
    """Drop clause breaks at the ends and runs of them: "Stop. Now." is "stop , now"."""
    kept: list[str] = []
    for word in words:
        if word != _BREAK or (kept and kept[-1] != _BREAK):
            kept.append(word)
    while kept and kept[-1] == _BREAK:
        kept.pop()
    return kept


def _has_question_cue(words: list[str]) -> bool:
    if _QUESTION_WORDS.intersection(words):
        return True
    return _opener(words) in _QUESTION_OPENERS


def _opener(words: tuple[str, ...] | list[str]) -> str:
    """The first word after greetings and fillers ("hi there, can I ..." opens with "can")."""
    return next((w for w in words if w not in _LEAD_FILLERS and w != _BREAK), "")


@lru_cache(maxsize=4096)
def _canonical(word: str) -> str:
    """The canonical form of one lower-case word: alias, squeezed, or typo-corrected keyword."""
    if word in _ALIASES:
        return _ALIASES[word]
    if word in _KNOWN or not word.isalpha():
        return word
    for squeezed in (re.sub(r"(.)\1{2,}", r"\1\1", word), re.sub(r"(.)\1+", r"\1", word)):
        if squeezed in _KNOWN or squeezed in _ALIASES:
            return _ALIASES.get(squeezed, squeezed)
    if len(word) < 4:
        return word
    near = [k for k in _FUZZY_TARGETS if abs(len(k) - len(word)) <= 1 and _within_one_edit(word, k)]
    # Prefer a keyword with the same first letter, then the alphabetically first: deterministic.
    # Dropped letters are the commonest slip, so a longer keyword beats a shorter one.
    near.sort(key=lambda k: (k[0] != word[0], len(k) < len(word), k))
    return near[0] if near else word


def _within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance (optimal string alignment) between a and b is at most 1."""
    if a == b:
        return True
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (len(diff) == 2 and diff[1] == diff[0] + 1
                and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    if len(long_) - len(short) != 1:
        return False
    i = next((i for i in range(len(short)) if short[i] != long_[i]), len(short))
    return short[i:] == long_[i + 1:]


def _compile(phrase: str) -> re.Pattern[str]:
    """Turn one phrase of a keyword table into a regular expression over canonical text."""
    parts: list[str] = []
    gap = anchored_start = anchored_end = False
    for token in phrase.split():
        if token == "^":
            anchored_start = True
            continue
        if token == "$":
            anchored_end = True
            continue
        if token == "*":
            gap = True
            continue
        optional = token.endswith("?") and len(token) > 1
        token = token.rstrip("?") if optional else token
        if token.startswith("!"):
            banned = "|".join(re.escape(w) for w in token[1:].split("|"))
            word = rf"(?!(?:{banned})(?!\S))[^\s,]+"
        else:
            word = "(?:" + "|".join(r"\d+" if w == "<num>" else re.escape(w)
                                    for w in token.split("|")) + ")"
        sep = "" if not parts else (r" (?:[^\s,]+ ){0,3}" if gap else " ")
        parts.append(f"(?:{sep}{word})?" if optional else sep + word)
        gap = False
    head = "^" if anchored_start else r"(?<!\S)"
    tail = "$" if anchored_end else r"(?!\S)"
    return re.compile(head + "".join(parts) + tail)


_TABLES = (_STOP_PHRASES, _START_PHRASES, _HELP_PHRASES, _HELP_TOPIC_PHRASES, _CALLBACK_PHRASES,
           _DISCOUNT_PHRASES, _HUMAN_PHRASES, _HUMAN_AS_FEATURE, _DOWNGRADE_PHRASES,
           _DOWNGRADE_TOPICS, _PRORATION_PHRASES, _PRORATION_TOPICS, _FEATURE_PHRASES,
           _FEATURE_TOPICS, _SEAT_TOPICS, _PLAN_QUESTION, _PRICE_FIRST_TOPICS, _PRICE_PHRASES,
           _PRICE_TOPICS, _LEAVING_PHRASES, _USAGE_DROP, _AFFIRM_IN_QUESTION,
           _PRICE_REASON_PHRASES, _NOT_NEEDED_PHRASES, _TIMING_PHRASES, _DECLINE_PHRASES,
           _AFFIRM_PHRASES, _FALSE_NEGATIONS, _HOLD_PHRASES, _PLAIN_NO)
_PATTERNS: dict[str, re.Pattern[str]] = {p: _compile(p) for table in _TABLES for p in table}


def _any(phrases: tuple[str, ...], text: str) -> bool:
    return any(_PATTERNS[p].search(text) for p in phrases)


def _vocabulary() -> frozenset[str]:
    words = {k.lower() for k in STOP_KEYWORDS | START_KEYWORDS | HELP_KEYWORDS}
    words |= _CONFIRM_WORDS | _CONFIRM_COMPANIONS | _NEGATORS | _ACTIONS | _FILLERS
    words |= _QUESTION_WORDS | _QUESTION_OPENERS | set(_ALIASES.values())
    for table in _TABLES:
        for phrase in table:
            for token in phrase.split():
                words.update(w for w in token.strip("!?").split("|") if w.isalpha())
    return frozenset(words)


_VOCABULARY = _vocabulary()
_KNOWN = _VOCABULARY | _COMMON_WORDS
_FUZZY_TARGETS = tuple(sorted(w for w in _VOCABULARY if len(w) >= 4))
