"""The semantic cache's guard: may the answer cached for one question be served to another?

Embeddings score a question and its negation, its mirror ("Alice paid Bob" / "Bob paid
Alice") or a changed id as near-identical, so every candidate hit goes through `check`
first. A false hit serves an answer to a different question, a false miss only costs an
upstream call, so every rule refuses when in doubt. The rules are surface rules on the
tokens of both texts (no model, standard library only); each one compares something the
two texts must share:

- number: the multisets of numbers (digits, ids inside tokens, number words) are equal;
- negation: the texts hold as many negation cues;
- polarity: the same words from a table of opposites (enable/disable, off, before/after,
  cheap/expensive, un-/dis- forms of a word the other text has), the same quantifier,
  conjunction and preposition-role (to X / from X) choices;
- question: the same question word, modal and tense (why/how, can/should, did/will);
- person: the same people asked about (my/your, he/she);
- name: every name, acronym or code identifier of one text is in the other;
- quoted: quoted spans are equal (or appear verbatim in the other text);
- order: no two words swap roles around a shared relation ("Alice paid Bob" / "Bob paid
  Alice", "milk chocolate" / "chocolate milk"), and no preposition moves from one word to
  another ("convert a string to an int" / "convert an int to a string");
- substitution / addition: every content word of one text is in the other as often (same
  stem, a listed synonym or spelling variant), fillers aside ("please", "the best way to").

The tables below favour refusing: a word in an opposites table can only cause a refusal,
never a hit. What lets two different surfaces match is deliberately small: stems, the
synonym and spelling lists, fillers, number words, case, and stopwords outside the tables.

`check` is pure and deterministic and `check(a, b) == check(b, a)`. Its rules are part of
the cache's scope key through GUARD_VERSION: bump it whenever a rule or a table changes,
so entries admitted under older rules are not served under newer ones.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, insort
from collections import Counter
from decimal import Decimal
from functools import lru_cache

GUARD_VERSION = 1


def check(cached: str, asked: str) -> str | None:
    """None when `asked` may be served the answer cached for `cached`; otherwise the rule
    that refused: "number", "negation", "polarity", "question", "person", "name", "quoted",
    "order", "substitution" or "addition"."""
    a = _analyse(cached) if len(cached) <= _CACHED_LENGTH else _analyse.__wrapped__(cached)
    b = _analyse(asked) if len(asked) <= _CACHED_LENGTH else _analyse.__wrapped__(asked)
    if a.surface == b.surface:  # case, punctuation, spacing or contraction changes only
        return None
    if a.numbers != b.numbers:
        return "number"
    if a.negations != b.negations:
        return "negation"
    if a.negations and (a.clauses > 1 or b.clauses > 1) and a.negated != b.negated:
        return "negation"  # as many cues, on other words: "I can log in but not reset" / the reverse
    if (
        a.polar != b.polar
        or _soft_conflict(a.soft, b.soft)
        or _prefix_conflict(a, b)
        or _prefix_conflict(b, a)
        or _role_conflict(a.roles, b.roles)
    ):
        return "polarity"
    if _soft_conflict(a.question, b.question) or _tense_conflict(a.tense, b.tense):
        return "question"
    if a.person and b.person and a.person != b.person:
        return "person"
    if (a.names and not a.names <= b.present) or (b.names and not b.names <= a.present):
        return "name"
    if not _quotes_match(a, b) or not _quotes_match(b, a):
        return "quoted"
    if _roles_swapped(a, b):
        return "order"
    if a.content != b.content:
        content_a, content_b = Counter(a.content), Counter(b.content)
        only_a, only_b = content_a - content_b, content_b - content_a
        if a.nouns or b.nouns:
            _match_nouns(only_a, only_b, a, b)
            _match_nouns(only_b, only_a, b, a)
        if only_a or only_b:
            return "substitution" if only_a and only_b else "addition"
    swapped_a = {_FILLER_KEYS[k] for k in a.fillers - b.fillers} - {""}
    swapped_b = {_FILLER_KEYS[k] for k in b.fillers - a.fillers} - {""}
    if swapped_a and swapped_b and swapped_a != swapped_b:
        return "substitution"
    return None


# --- Normalisation ---------------------------------------------------------------------

_CHAR_MAP = str.maketrans(
    dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2039\u203a", "'")  # curly single quotes
    | dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"')  # curly double quotes
    | dict.fromkeys("\u2212\u2010\u2011\u2012\u2013", "-")  # minus, hyphens, en dash
    | dict.fromkeys("\u2014\u2015", " - ")  # dashes between words
    | dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad")  # invisible: dropped
    | dict.fromkeys(range(0xE000, 0xE100))  # private use: the placeholders of quoted spans
)

# Quoted spans: "...", `...` (or ```...```), and '...' when the quotes are not apostrophes.
_QUOTE_RES = (
    ('"', re.compile(r'"([^"\n]+)"')),
    ("`", re.compile(r"`+([^`\n]+?)`+")),
    ("'", re.compile(r"(?<!\w)'([^'\n]+?)'(?!\w)")),
)

# For chunks of text that are not a plain word: words, numbers and code identifiers with
# their inner punctuation ("os.path", "gpt-4o", "C++", "C#", "#48213", "France's", "isn't",
# "3.5%", "1,000", "2024-05-01", "3pm"), a minus sign, currency signs, and (when the text has
# any) operators ("x > 5" and "x < 5" differ).
_TOKEN_PATTERN = (
    r"[#.@]?\w+(?:\+\+|#)?(?:[.'\-/]\w+(?:\+\+|#)?|(?<=\d)[,:]\d+)*%?"
    r"|-(?<![\w.]-)(?=\d)"  # a minus sign: joined to the number after it
    r"|[$€£¥%&\ue000-\ue0ff]"  # symbols, and the placeholders of quoted spans
)
_TOKEN_RE = re.compile(_TOKEN_PATTERN)
# Texts with operator characters are rare; scanning for operators costs a third of the time.
_TOKEN_WITH_OPERATORS_RE = re.compile(
    _TOKEN_PATTERN + r"|[=<>]=*|!=+|&&|\|\||(?<=[\w)\s])[*^+](?=\s*[\w(])"
)
_OPERATOR_CHARS = "=<>|*^+"
# Stripped from the ends of whitespace-separated chunks ("(each", "list,", "*bold*"); "_" stays
# ("__init__") and so do "-", "#", "$", "%" and "+" (numbers, ids, "C++").
_PUNCTUATION = "\"'`()[]{}<>,.!?;:*~"
_QUOTE_MARK = 0xE000  # quoted span k is replaced by chr(_QUOTE_MARK + k) while tokenizing
_OPERATOR_START = set("=<>!|*^+&")
_SYMBOLS = {"$": "dollar", "€": "euro", "£": "pound", "¥": "yen", "%": "percent", "&": "and"}
_IDENTIFIER_RE = re.compile(r"[\d_.+#@]|[a-z][A-Z]")  # what makes a token a code identifier
_DIGITS_RE = re.compile(r"\d+")
_IDENTIFIER_LETTERS_RE = re.compile(r"[^\W\d]")
_DECIMAL_RE = re.compile(r"-?\d+(?:\.\d+)?|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_UNIT_RE = re.compile(r"(-?\d+(?:\.\d+)?)([^\W\d_]+)")
_PART_SPLIT_RE = re.compile(r"[-/']")
_ORDINAL_SUFFIXES = {"st", "nd", "rd", "th"}

# Tokens standing for words of their own.
_WHOLE_TOKENS = {
    "won't": ("will", "not"),
    "can't": ("can", "not"),
    "cannot": ("can", "not"),
    "shan't": ("shall", "not"),
    "ain't": ("is", "not"),
    "let's": ("let", "us"),
    "i'm": ("i", "am"),
    "w/o": ("without",),
    "e.g": ("e.g",),
    "i.e": ("i.e",),
    "a.m": ("am",),
    "p.m": ("pm",),
    "u.s": ("us",),
    "u.k": ("uk",),
    "approx": ("approximately",),
}
# Words whose "'s" is "is" ("what's"); after any other word it is a possessive.
_IS_CONTRACTED = set("it that what where who how there here he she when why this".split())
_CONTRACTED_SUFFIXES = (
    ("n't", "not"),
    ("'re", "are"),
    ("'ve", "have"),
    ("'ll", "will"),
    ("'d", "would"),
    ("'m", "am"),
)


# --- Tables ----------------------------------------------------------------------------
# Words are casefolded. Lines of the opposite tables read "flag side | side | ..." (indented
# lines continue the line above): flag "v" adds verb inflections (s, es, ed, d, ing), "n"
# plurals, "-" nothing (adjectives and prepositions are listed with their comparatives,
# which are other questions).

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * i
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
_SCALES = {
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
}
_LONE_VALUES = {
    "once": "1",
    "twice": "2",
    "thrice": "3",
    "double": "2",
    "triple": "3",
    "half": "0.5",
}
_ORDINALS = {
    w: i
    for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split(),
        1,
    )
}
_PLURAL_SCALES = {"hundreds", "thousands", "millions", "billions", "dozens"}
# "one" after these is a pronoun ("which one", "no one", "how would one"), not a count.
_PRONOUN_ONE_BEFORE = {
    "no",
    "any",
    "every",
    "some",
    "each",
    "which",
    "this",
    "that",
    "the",
    "another",
    "one",
    "a",
    "can",
    "could",
    "would",
    "should",
    "does",
    "do",
    "may",
    "might",
    "must",
    "will",
    "shall",
    "if",
}
# "a second", "per second": the unit of time, not the ordinal.
_UNIT_SECOND_BEFORE = {"a", "per", "each", "every", "one", "half"}

_NEGATIONS = {
    "not",
    "no",
    "never",
    "none",
    "nobody",
    "nothing",
    "nowhere",
    "neither",
    "nor",
    "without",
    "nope",
    "noone",
}

_HARD_OPPOSITES = """
v enable | disable
v activate | deactivate
v buy purchase bought | sell sold
v borrow | lend lent
v import | export
v upload | download
v upgrade | downgrade
v encrypt | decrypt
v encode | decode
v compress zip | decompress unzip
v serialize serialise | deserialize deserialise
v mount | unmount
v install | uninstall
v connect | disconnect
v attach | detach
v lock | unlock
v subscribe | unsubscribe
v follow | unfollow
v mute | unmute
v block | unblock
v hide | unhide reveal
v include | exclude
v allow permit accept approve
  | deny forbid forbade forbidden prohibit reject refuse ban prevent decline disallow block
v add insert append | remove delete drop erase
v increase raise grow boost expand | decrease reduce shrink
v push | pull
v send sent | receive
v open | close shut
v start begin began begun launch | stop end finish halt terminate quit exit
v win won | lose lost
v succeed | fail
v love | hate
v agree | disagree
v maximize maximise | minimize minimise
v overestimate | underestimate
v deposit | withdraw withdrew withdrawn
v inhale | exhale
v arrive | depart
v login | logout
v subtract
v multiply | divide
n success | failure
n advantage pro pros benefit upside | disadvantage con cons drawback downside risk
n profit | loss
n input | output
n client | server
n sunrise | sunset
n debit | credit
n overflow | underflow
n morning | afternoon | evening | night
- yes
- off
- down
- only
- too
- still
- unless
- barely hardly scarcely
- except excluding besides
- true | false
- plus | minus
- out outside outer outbound outgoing | inside inner inbound incoming
- before earlier prior previous previously | after later afterwards next subsequent subsequently
- first | last
- early earliest | late latest
- until till | since
- yesterday | today | tomorrow
- more greater larger bigger higher above over exceed exceeds exceeded exceeding upper taller longer
  older heavier wider | less fewer smaller lower below under beneath lesser shorter younger lighter
  narrower
- most max maximum maximal largest biggest highest greatest top
  | least min minimum minimal smallest lowest fewest bottom
- best | worst
- better | worse
- cheap cheaper cheapest inexpensive affordable | expensive costly pricey pricier priciest
- easy easier easiest | hard harder hardest difficult
- fast faster fastest quick quicker quickest quickly rapid rapidly | slow slower slowest slowly
- hot hotter hottest warm warmer warmest | cold colder coldest cool cooler coolest
- high | low
- long | short
- strong stronger strongest | weak weaker weakest
- full | empty
- wet | dry
- dark darker darkest | light
- new newer newest | old oldest
- safe safer safest safely | unsafe dangerous risky harmful
- healthy healthier | unhealthy
- legal | illegal
- possible | impossible
- visible | invisible hidden
- valid | invalid
- correct | incorrect wrong
- positive | negative
- public | private
- internal | external
- local | remote
- static | dynamic
- sync synchronous synchronously | async asynchronous asynchronously
- online | offline
- ascending asc increasing | descending desc decreasing
- uppercase | lowercase
- horizontal horizontally | vertical vertically
- left | right
- north northern | south southern | east eastern | west western
- male | female
- men | women
- boy boys | girl girls
- forward forwards | backward backwards
- always | usually often frequently generally normally | sometimes occasionally
  | rarely seldom
- same identical equal equivalent | similar | different distinct unequal
- overweight | underweight
- raw | cooked
- alive | dead
- singular | plural
"""

# Opposites that only refuse when both texts take a side and the sides differ: these words
# are common fillers on their own ("list all files" / "list the files") but flip the
# question when swapped ("all" / "some", "and" / "or").
_SOFT_OPPOSITES = """
- all every each entire whole | some any several partial
- and both | or either
- good great excellent | bad poor terrible awful
- odd | even
- front | back rear
"""

# The question asked: its wh-word and modal. "What is the way to" asks "how" (see _analyse);
# otherwise "how is cheese made" and "what is cheese made of" differ.
_QUESTION_OPPOSITES = """
- what which | how | why | when | where | who whom | whose
- can could may might would | should ought | must
"""
# Who the question is about. "you" right after a modal addresses the assistant ("can you
# tell me") or is generic ("how do you"), so it does not count there.
_PERSONS = {
    w: side
    for side, words in enumerate(
        (
            "i me my mine myself we us our ours ourselves",
            "you your yours yourself yourselves",
            "he him his himself",
            "she her hers herself",
            "they them their theirs themselves",
        )
    )
    for w in words.split()
}
_ADDRESSING = {"can", "could", "would", "will", "do", "does", "did", "thank"}
# "have to", "need to", "got to" ask what one must do.
_MUST_BEFORE_TO = {"have", "has", "had", "need", "needs", "needed", "got"}
# Past forms whose stem differs from the present, for texts without an auxiliary.
_IRREGULAR_PAST = set(
    """
wrote won made found built began took gave went came saw said got paid sold bought ran ate drank
knew thought told lost held brought sent spent fell felt kept led met stood understood chose drove
flew grew threw wore broke spoke woke forgot became did was were had
""".split()
)

# Tense refuses only when the two texts share no tense: "is" turns up incidentally.
_TENSES = {
    "did": "past",
    "was": "past",
    "were": "past",
    "had": "past",
    "will": "future",
    "shall": "future",
    "does": "present",
    "do": "present",
    "is": "present",
    "are": "present",
    "am": "present",
    "has": "present",
    "have": "present",
}

# Prepositions attach to the words that follow them ("to the new server": new, server). A
# word that is "to X" in one text and "from X" in the other asks another question ("flights
# to Paris" / "flights from Paris"), and so does a preposition that moved from one word to
# another ("convert a string to an int" / "convert an int to a string").
_PREPOSITIONS = set(
    """
to into onto toward towards from by for in on at of with about than as over under between among
through across within inside outside near via per after before without against like
""".split()
)
_ROLE_PREPOSITIONS = {
    "to": "to",
    "into": "to",
    "onto": "to",
    "toward": "to",
    "towards": "to",
    "from": "from",
    "by": "by",
    "for": "for",
}
_ROLE_CONFLICTS = {
    ("to", "from"),
    ("from", "to"),
    ("to", "by"),
    ("by", "to"),
    ("for", "from"),
    ("from", "for"),
    ("for", "by"),
    ("by", "for"),
}

# "What is the best way to reverse a list" asks how to reverse a list; "the worst way" does not.
_NEUTRAL_BEFORE_WAY = {"best", "right", "correct", "proper", "good", "recommended"}
_WAY = {"way", "ways", "method", "methods", "approach", "approaches", "practice", "practices"}

# un-/dis-/in- forms only count against their own root in the other text.
_NEGATING_PREFIXES = (
    ("un", 4),
    ("dis", 4),
    ("non", 3),
    ("anti", 4),
    ("in", 5),
    ("im", 5),
    ("il", 5),
    ("ir", 5),
    ("de", 5),
)

# Determiners: skipped when finding what a preposition attaches to, and not a relation
# between swapped words.
_DETERMINERS = {
    "a",
    "an",
    "the",
    "my",
    "your",
    "his",
    "her",
    "its",
    "our",
    "their",
    "this",
    "that",
    "these",
    "those",
    "some",
    "any",
}
# Symmetric connectives: "tea and coffee" / "coffee and tea" ask the same.
_SYMMETRIC = {"and", "or", "vs", "versus", "nor", "both", "either"}

_STOPWORDS = set(
    """
a an the this that these those it its itself i me my mine myself we us our ours ourselves you
your yours yourself yourselves he him his himself she her hers herself they them their theirs
themselves what which who whom whose when where why how whether is are was were am be been being
do does did doing done have has had having can could would should will shall may might must
ought of to in on at by for with about as into onto from than then so if or and but nor also too
very much many such there here not no never none nothing nobody nowhere neither either both all
any some each every other another own up down out off over under more most less least only again
further ever even still yet already per via vs versus toward towards because though although
while unless until till since just e.g i.e etc anymore 's
""".split()
)

# Words that do not change the question asked ("please", "the best way to", "explain"), by
# class. One may be added or dropped, but swapping one for another of a different class is
# a substitution ("what should I ask my doctor" / "what should I tell my doctor"). Class ""
# is pure discourse and never counts.
_FILLER_CLASSES = """
: please thank thanks exactly actually really basically simply kindly currently hey hi hello ok okay
autumn fall
  someone anyone somebody anybody question wonder wondering curious
request: tell explain explanation describe description give know figure
mean: mean means meaning meant definition define
way: way ways method methods approach process procedure step steps
able: able possible
want: want wanted wish
help: help
understand: understand
use: use using utilize utilise via
go: go going
located: located
thing: thing things something anything
good: good proper properly recommended recommend suggest
detail: detail details detailed
"""
_FILLERS = {
    word: cls
    for cls, _, words in (
        line.partition(":") for line in _FILLER_CLASSES.replace("\n  ", " ").strip().splitlines()
    )
    for word in words.split()
}

# True synonyms and spelling variants; anything not listed must match by stem.
_SYNONYMS = """
fix repair
start begin
end finish
car automobile
big large
small little tiny
make create
show display
delete remove erase
get obtain retrieve fetch
buy purchase
need require
help assist
change modify alter
answer reply respond
photo picture pic image
film movie
kid child
doctor physician
mistake error
cost price
calculate compute
quick fast rapid
dict dictionary
config configuration
repo repository
db database
info information
env environment
var variable
func function
arg argument
param parameter
dir directory folder
tv television
phone telephone
email e-mail
ok okay
autumn fall
""".strip()

_SPELLING = {
    "colour": "color",
    "colours": "colors",
    "flavour": "flavor",
    "behaviour": "behavior",
    "favourite": "favorite",
    "favour": "favor",
    "honour": "honor",
    "neighbour": "neighbor",
    "labour": "labor",
    "humour": "humor",
    "harbour": "harbor",
    "centre": "center",
    "centres": "centers",
    "metre": "meter",
    "metres": "meters",
    "litre": "liter",
    "litres": "liters",
    "theatre": "theater",
    "tyre": "tire",
    "tyres": "tires",
    "grey": "gray",
    "catalogue": "catalog",
    "programme": "program",
    "dialogue": "dialog",
    "licence": "license",
    "defence": "defense",
    "offence": "offense",
    "aluminium": "aluminum",
    "cheque": "check",
    "jewellery": "jewelry",
    "travelling": "traveling",
    "travelled": "traveled",
    "cancelled": "canceled",
    "cancelling": "canceling",
    "modelling": "modeling",
    "labelled": "labeled",
    "mum": "mom",
    "maths": "math",
    "analyse": "analyze",
    "analysed": "analyzed",
    "analysing": "analyzing",
    "paralyse": "paralyze",
    "fulfil": "fulfill",
    "enrol": "enroll",
    "percent": "percent",
}
_ISE_RE = re.compile(r"is(e|es|ed|ing|ation|ations|er|ers)$")


def _inflect(flag: str, word: str) -> list[str]:
    if flag == "-":
        return [word]
    if flag == "n":
        return [word, word + "s", word + "es"]
    forms = [word, word + "s", word + "es", word + "ed", word + "d", word + "ing"]
    if word.endswith("e"):
        forms.append(word[:-1] + "ing")
    if word.endswith("y"):
        forms += [word[:-1] + "ies", word[:-1] + "ied"]
    if (
        len(word) >= 3
        and word[-1] not in "aeiouwxy"
        and word[-2] in "aeiou"
        and word[-3] not in "aeiou"
    ):
        forms += [word + word[-1] + "ed", word + word[-1] + "ing"]  # stop -> stopped, stopping
    return forms


def _parse_opposites(spec: str, prefix: str) -> dict[str, tuple[tuple[str, int], ...]]:
    lines = [line.partition(" ") for line in spec.strip().replace("\n  ", " ").splitlines()]
    listed = {word for _, _, rest in lines for word in rest.replace("|", " ").split()}
    table: dict[str, list[tuple[str, int]]] = {}
    for number, (flag, _, rest) in enumerate(lines):
        for side, words in enumerate(rest.split("|")):
            for word in words.split():
                for form in _inflect(flag, word):
                    if form != word and form in listed:
                        continue  # an inflection never overrides a word listed in its own right
                    entry = (f"{prefix}{number}", side)
                    if entry not in table.setdefault(form, []):
                        table[form].append(entry)
    return {form: tuple(entries) for form, entries in table.items()}


_HARD = _parse_opposites(_HARD_OPPOSITES, "h")
_SOFT = _parse_opposites(_SOFT_OPPOSITES, "s")
_QUESTION = _parse_opposites(_QUESTION_OPPOSITES, "q")
_WH, _WHAT, _HOW = "q0", 0, 1  # the wh-word line of _QUESTION_OPPOSITES and two of its sides
_MODAL, _MUST = "q1", 2  # the modal line and its "must" side


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light suffix stripper: sort/sorts/sorted/sorting, list/lists, copy/copies meet."""
    word = _SPELLING.get(word, word)
    if len(word) <= 3 or not word.isalpha():
        return word
    if len(word) >= 6:
        word = _ISE_RE.sub(r"iz\1", word)  # optimise -> optimize, on both sides alike
        if word.endswith("yse"):
            word = word[:-3] + "yze"
    if word.endswith(("ies", "ied")) and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ing") and len(word) > 5 and any(c in "aeiouy" for c in word[:-3]):
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4 and not word.endswith("eed"):
        word = word[:-2]
    elif word.endswith("es") and len(word) > 4 and word[-3] in "sxzh":
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


def _key(word: str) -> str:
    stem = _stem(word)
    return _CANONICAL.get(stem, stem)


_CANONICAL: dict[str, str] = {}
for _line in _SYNONYMS.splitlines():
    _group = [_stem(w) for w in _line.split()]
    for _s in _group:
        _CANONICAL.setdefault(_s, _group[0])
_FILLER_KEYS = {_key(w): cls for w, cls in _FILLERS.items()}

# Capitalised words that may open a sentence without being names.
_COMMON = (
    _STOPWORDS
    | set(_FILLERS)
    | set(_HARD)
    | set(_SOFT)
    | set(_QUESTION)
    | set(_UNITS)
    | set(_TENS)
    | set(_ORDINALS)
    | set(_LONE_VALUES)
    | set(_SCALES)
    | set(_NEGATIONS)
    | set(_SYNONYMS.split())
    | set(
        """
explain tell give write list show describe define find compare calculate compute convert summarize
summarise translate name create make check print sort reverse run build generate suggest provide say
let yes hi hello hey thanks ok okay so now then also quick question using use imagine assume suppose
is are was were do does did can could would should will may might must have has had
""".split()
    )
)


# --- Analysis of one text --------------------------------------------------------------


class _Text:
    __slots__ = (
        "surface",
        "numbers",
        "negations",
        "negated",
        "clauses",
        "polar",
        "soft",
        "question",
        "tense",
        "person",
        "roles",
        "attached",
        "runs",
        "stranded",
        "nouns",
        "prefixed",
        "names",
        "present",
        "quoted",
        "raw",
        "keys",
        "positions",
        "content",
        "fillers",
    )


class _Word:
    """What the tables say about one casefolded word; computed once per word."""

    __slots__ = (
        "special",
        "negation",
        "hard",
        "soft",
        "question",
        "tense",
        "person",
        "past",
        "key",
        "kind",
        "prefixed",
        "entry",
        "plain",
        "role",
        "noun_form",
    )


# Words whose meaning depends on their neighbours; the analysis looks at those.
_SPECIAL = (
    set(_UNITS)
    | set(_TENS)
    | set(_SCALES)
    | set(_ORDINALS)
    | set(_LONE_VALUES)
    | _PLURAL_SCALES
    | _MUST_BEFORE_TO
    | _NEUTRAL_BEFORE_WAY
    | {"fail", "fails", "failed", "failing", "time", "times", "going", "you"}
)
_WORDS: dict[str, _Word] = {}


def _word(word: str) -> _Word:
    info = _WORDS.get(word)
    if info is not None:
        return info
    info = _Word()
    info.special = word in _SPECIAL
    info.negation = word in _NEGATIONS
    info.hard = _HARD.get(word, ())
    info.soft = _SOFT.get(word, ())
    info.question = _QUESTION.get(word, ())
    info.tense = _TENSES.get(word)
    info.person = _PERSONS.get(word)
    info.past = word in _IRREGULAR_PAST or (
        word.endswith("ed") and len(word) > 4 and word not in _STOPWORDS
    )
    info.prefixed = None
    if word in _STOPWORDS:
        info.key, info.kind = word, "s"
    else:
        info.key = _key(word)
        info.kind = "f" if info.key in _FILLER_KEYS else "w"
        for prefix, minimum in _NEGATING_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= minimum:
                info.prefixed = (info.key, _key(word[len(prefix) :]))
                break
    info.entry = (info.key, info.kind)
    info.role = word in _PREPOSITIONS
    info.noun_form = info.kind == "w" and info.key != word and word.endswith(("ing", "ings"))
    info.plain = not (
        info.special
        or info.negation
        or info.hard
        or info.soft
        or info.question
        or info.tense
        or info.person is not None
        or info.past
        or info.prefixed
        or info.role
        or info.noun_form
    )
    if len(_WORDS) < 50_000:  # user text is unbounded, the table of words seen (~360 B each) not
        _WORDS[word] = info
    return info


def _number_key(value: float | int | str) -> str:
    """The key of a number: one for "1,000", "1000.0" and 1000, one for "0.5" and "half"."""
    if isinstance(value, str):  # the common cases without Decimal's cost: "42", "3.50"
        whole, dot, fraction = value.partition(".")
        if whole.isdigit() and (not dot or fraction.isdigit()):
            fraction = fraction.rstrip("0")
            return "#" + (whole.lstrip("0") or "0") + ("." + fraction if fraction else "")
    number = Decimal(value.replace(",", "") if isinstance(value, str) else str(value)).normalize()
    return "#" + format(number if number else Decimal(0), "f")


_CACHED_LENGTH = 2000  # longer texts are analysed every time rather than held in the cache


# An analysis holds about 13 KB for a 200-character text: 1024 of them stay within ~13 MB per
# process, and a cached question is analysed again only once it has not been asked for a while.
@lru_cache(maxsize=1024)
def _analyse(text: str) -> _Text:
    raw = text if text.isascii() else unicodedata.normalize("NFKC", text).translate(_CHAR_MAP)
    quoted: list[str] = []
    masked = raw
    for char, pattern in _QUOTE_RES:
        if masked.count(char) >= 2:
            masked = pattern.sub(lambda m: _mask(m, quoted), masked)

    # 1. Tokens: (casefolded word, kind), kind "w" word, "#" number, "o" ordinal, "n" identifier.
    words: list[tuple[str, str]] = []
    names: set[str] = set()
    present: set[str] = set()  # besides the words: whole forms ("carry-on") and labels
    has_operators = any(c in masked for c in _OPERATOR_CHARS)
    tokens = _TOKEN_WITH_OPERATORS_RE if has_operators else _TOKEN_RE
    for line in masked.splitlines():
        first = True  # at the start of a sentence
        for chunk in line.split():
            token = chunk.strip(_PUNCTUATION)
            # Most chunks are a word, perhaps with punctuation around it.
            if token.islower() and token.isalpha():
                if token in _WHOLE_TOKENS:  # "cannot"
                    words.extend((w, "w") for w in _WHOLE_TOKENS[token])
                else:
                    words.append((token, "w"))
            elif token.isalpha() and (token[1:].islower() or token.isupper()):
                low = token.lower()
                if low == "i":
                    words.append((low, "w"))
                elif (len(token) >= 2 and token.isupper()) or not first or low not in _COMMON:
                    names.add(low)
                    if len(token) == 1:  # "plan A": a label, not the article
                        present.add(low)
                        words.append((token, "n"))
                    else:
                        words.append((low, "w"))
                else:  # a capitalised common word opening a sentence
                    words.append((low, "w"))
            elif "'" in token and token.islower() and token.replace("'", "").isalpha():
                _token(token, first, words, names, present, quoted)  # "what's", "isn't"
            elif token.isdigit():
                words.append(("#" + (token.lstrip("0") or "0"), "#"))
            elif has_operators and chunk != "&" and not chunk.strip(_OPERATOR_CHARS + "!&"):
                words.append((chunk, "n"))  # "x >= 5", "5 * 3"
            else:
                for part in tokens.findall(chunk):
                    _token(part, first, words, names, present, quoted)
                    first = False
            first = chunk[-1] in ".!?;:"

    # 2. Number words, negations, opposites; the sequence of keys for the order and content rules.
    numbers: Counter = Counter()
    negations = 0
    negated_at: list[int] = []  # where in seq the word after each negation cue comes
    polar: Counter = Counter()
    soft: dict[str, set[int]] = {}
    question: dict[str, set[int]] = {}
    tense: set[str] = set()
    person: set[int] = set()
    past_form = False
    prefixed: list[tuple[str, str]] = []  # (key of "unsafe", key of "safe")
    role_at: list[int] = []  # where the prepositions are in seq
    nouns: set[str] = set()  # "-ing" words kept whole as nouns
    # (key, kind) with kind "w" content word, "f" filler, "s" stopword, "#" number.
    seq: list[tuple[str, str]] = []
    n = len(words)
    resume = 0  # words before this index were read together with an earlier one
    for i, (word, kind) in enumerate(words):
        if i < resume:
            continue
        if kind == "w":
            info = _WORDS.get(word) or _word(word)
            if info.plain:
                seq.append(info.entry)
                continue
            if info.special:
                used = _special_word(words, i, seq, numbers, question, tense)
                if used:
                    if used < 0:  # a negation cue ("fails to")
                        negations += 1
                        negated_at.append(len(seq))
                        used = 1
                    resume = i + used
                    continue
            if info.negation:
                negations += 1
                negated_at.append(len(seq) + 1)
            if info.past:
                past_form = True
            for entry in info.hard:
                polar[entry] += 1
            for group, side in info.soft:
                soft.setdefault(group, set()).add(side)
            for group, side in info.question:
                question.setdefault(group, set()).add(side)
            if info.tense:
                tense.add(info.tense)
            if info.person is not None:
                person.add(info.person)
            if info.prefixed:
                prefixed.append(info.prefixed)
            if info.role:
                role_at.append(len(seq))
            if info.noun_form and _after_determiner(words, i):
                seq.append((word, info.kind))  # "an oil painting" is not "oil paint"
                nouns.add(word)
            else:
                seq.append(info.entry)
        elif kind == "n":
            seq.append((word, "w"))
        elif kind == "-":  # the sign of "-5"
            following = words[i + 1][0] if i + 1 < n else ""
            if following[:1] == "#" and following != "#0":
                words[i + 1] = ("#-" + following[1:], "#")
        else:
            # "2 million", "1.5 billion": a digit number scaled by the next word.
            if (
                kind == "#"
                and i + 1 < n
                and words[i + 1][0] in _SCALES
                and words[i + 1][0] != "dozen"
            ):
                word = _number_key(str(Decimal(word[1:]) * _SCALES[words[i + 1][0]]))
                resume = i + 2
            numbers[word] += 1
            seq.append((word, "#"))

    # 3. What each preposition attaches to: the content words after it ("from a Python list").
    roles: dict[str, set[str]] = {}
    attached: dict[str, set[str]] = {}  # preposition -> the words it attaches to
    runs: dict[int, set[str]] = {}  # position of a preposition in seq -> the same words
    stranded: set[str] = set()  # prepositions with no word after them
    for j in role_at:
        preposition = seq[j][0]
        k = j + 1
        while k < len(seq) and seq[k][0] in _DETERMINERS:
            k += 1
        run = set()
        while k < len(seq):
            key, kind = seq[k]
            if kind == "w" or kind == "#":
                run.add(key)
            elif not (run and (key in _SYMMETRIC or key in _DETERMINERS)):
                break  # a run goes on through "and" and "the": "between tea and the coffee"
            k += 1
        if not run:  # stranded: "who is Zeus the father of?"
            stranded.add(preposition)
        else:
            runs[j] = run
            attached.setdefault(preposition, set()).update(run)
            role = _ROLE_PREPOSITIONS.get(preposition)
            if role:
                for key in run:
                    roles.setdefault(key, set()).add(role)

    if past_form and not tense:  # "who invented X" / "who will invent X"
        tense.add("past")
    wh = question.get(_WH)
    if wh and _WHAT in wh and any(kind == "f" and _FILLER_KEYS[key] == "way" for key, kind in seq):
        wh.discard(_WHAT)  # "what is the best way to reverse a list" asks how to
        wh.add(_HOW)

    result = _Text()
    result.surface = "\x00".join([word for word, _ in words] + ["\x01"] + quoted)
    result.numbers = numbers
    result.negations = negations
    result.negated, result.clauses = _negated_heads(seq, negated_at)
    result.polar = polar
    result.soft = soft
    result.question = question
    result.tense = tense
    result.person = person
    result.roles = roles
    result.attached = attached
    result.runs = runs
    result.stranded = stranded
    result.nouns = nouns
    result.prefixed = prefixed
    result.names = names
    present.update([word for word, _ in words])
    result.present = present
    result.quoted = set(quoted)
    result.raw = raw
    result.keys = [key for key, _ in seq]
    # Words occurring once, by position: the anchors of the order rule.
    positions: dict[str, int] = {}
    repeated = set()
    for i, (key, kind) in enumerate(seq):
        if kind == "w" or kind == "#":
            if key in positions:
                repeated.add(key)
            positions[key] = i
    for key in repeated:
        del positions[key]
    result.positions = positions
    result.content = tuple(sorted([key for key, kind in seq if kind == "w"]))
    result.fillers = {key for key, kind in seq if kind == "f"}
    return result


# Words that join clauses: in a text of several clauses, which word a negation falls on matters.
_CLAUSE_WORDS = frozenset("but although though while whereas because yet however and or so unless".split())


def _negated_heads(seq: list[tuple[str, str]], negated_at: list[int]) -> tuple[Counter, int]:
    """The clause each negation cue falls in (as its content words), and how many clauses the text
    has: "tests pass locally and don't pass in CI" negates {pass, ci}, not {test, pass, local}."""
    bounds = [0] + [i + 1 for i, (key, kind) in enumerate(seq) if kind == "s" and key in _CLAUSE_WORDS] + [len(seq)]
    heads: Counter = Counter()
    for at in negated_at:
        clause = next(i for i in range(len(bounds) - 1) if at <= bounds[i + 1] or i == len(bounds) - 2)
        words = frozenset(key for key, kind in seq[bounds[clause]:bounds[clause + 1]] if kind == "w" or kind == "#")
        heads[words] += 1
    return heads, len(bounds) - 1


def _mask(match: re.Match, quoted: list[str]) -> str:
    if len(quoted) == 256:  # out of placeholders: later spans are read as plain text
        return match.group()
    quoted.append(match.group(1).strip())
    return f" {chr(_QUOTE_MARK + len(quoted) - 1)} "


def _token(
    token: str, first: bool, words: list, names: set, present: set, quoted: list[str]
) -> None:
    """Any token but a plain word: numbers, symbols, quoted literals, contractions, compounds
    ("carry-on", "and/or") and code identifiers."""
    lead = token[0]
    if lead.isdigit():
        _number_token(token, words, names)
        return
    if lead == "-":  # a minus sign, joined to the number that follows
        words.append(("-", "-"))
        return
    if "\ue000" <= lead <= "\ue0ff":
        # A quoted literal: every token in it counts as itself ("i" before "e").
        for literal in _TOKEN_WITH_OPERATORS_RE.findall(quoted[ord(lead) - _QUOTE_MARK]):
            words.append((literal.casefold(), "n"))
        return
    if lead in _SYMBOLS and len(token) == 1:
        words.append((_SYMBOLS[lead], "w"))
        return
    if lead in _OPERATOR_START:
        words.append((token, "n"))
        return
    if lead == "#" and token[1:].isdigit():
        words.append((_number_key(token[1:]), "#"))
        return
    low = token.casefold()
    whole = _WHOLE_TOKENS.get(low)
    if whole:
        words.extend((w, "w") for w in whole)
        return
    suffix = ()
    if "'" in low:
        if low.endswith("'s"):
            token, low = token[:-2], low[:-2]
            # "what's" is "what is"; "France's capital" keeps its possessive, which the order
            # rule reads as the relation of "the capital of France".
            suffix = ("is",) if low in _IS_CONTRACTED else ("'s",)
        else:
            for ending, word in _CONTRACTED_SUFFIXES:
                if low.endswith(ending):
                    token, low, suffix = token[: -len(ending)], low[: -len(ending)], (word,)
                    break
        if not low:
            return
    percent = low.endswith("%")
    if percent:
        token, low = token[:-1], low[:-1]
    present.add(low)
    if _IDENTIFIER_RE.search(token):
        names.add(low)  # code identifiers, versions, model names: compared whole
        words.append((low, "n"))
        words.extend((_number_key(d), "#") for d in _DIGITS_RE.findall(token))
    else:
        for part in _PART_SPLIT_RE.split(token):
            if not part:
                continue
            part_low = part.lower()
            if (
                part[0].isupper()
                and part_low != "i"
                and ((len(part) >= 2 and part.isupper()) or part_low not in _COMMON or not first)
            ):
                names.add(part_low)
                if len(part) == 1:
                    words.append((part, "n"))
                    present.add(part_low)
                    first = False
                    continue
            words.append((part_low, "w"))
            first = False
    words.extend((w, "w") for w in suffix)
    if percent:
        words.append(("percent", "w"))


def _after_determiner(words: list[tuple[str, str]], i: int) -> bool:
    """Whether a determiner opens the noun phrase ending at words[i] ("an oil painting")."""
    for j in range(i - 1, max(i - 4, -1), -1):
        word, kind = words[j]
        if word in _DETERMINERS:
            return True
        if kind != "w" or word in _STOPWORDS:
            return False
    return False


def _special_word(words, i, seq, numbers, question, tense) -> int:
    """Words read with their neighbours. Returns how many words were consumed (0: none, the
    word is analysed as usual; -1: one, and it was a negation cue)."""
    word = words[i][0]
    n = len(words)
    before = words[i - 1][0] if i else ""
    following = words[i + 1][0] if i + 1 < n else ""
    # Number words; "a hundred" is read from "hundred".
    if word in _UNITS or word in _TENS or (word in _SCALES and word != "dozen"):
        if word == "one" and (before in _PRONOUN_ONE_BEFORE or following in ("of", "another")):
            seq.append(("one", "s"))  # "which one", "how would one": a pronoun
            return 1
        value, end = _number_phrase(words, i)
        key = _number_key(value)
        numbers[key] += 1
        seq.append((key, "#"))
        return end - i
    if word in _ORDINALS and not (
        word == "second" and (before in _UNIT_SECOND_BEFORE or before.startswith("#"))
    ):
        key = "o" + str(_ORDINALS[word])
        numbers[key] += 1
        seq.append((key, "#"))
        return 1
    if word in _LONE_VALUES or word == "dozen":
        key = "#" + _LONE_VALUES.get(word, "12")
        numbers[key] += 1
        seq.append((key, "#"))
        return 1
    if word in _PLURAL_SCALES:
        numbers["~" + word] += 1
        seq.append(("~" + word, "#"))
        return 1
    if word in ("time", "times") and seq and seq[-1][1] == "#":
        seq.append(("times", "s"))  # "2 times" is "twice"
        return 1
    if word in ("fail", "fails", "failed", "failing") and following == "to":
        seq.append((word, "s"))  # "fails to start" is "does not start"
        return -1
    if word in _NEUTRAL_BEFORE_WAY and following in _WAY:  # "the best way to X" asks how to X
        seq.append((word, "s"))
        return 1
    if word in _MUST_BEFORE_TO and following == "to":  # "have to", "need to": must
        question.setdefault(_MODAL, set()).add(_MUST)
        if word in _TENSES:
            tense.add(_TENSES[word])
        seq.append((word, "s"))
        return 1
    if word == "going" and following == "to":
        tense.add("future")
    elif word == "you" and before in _ADDRESSING:
        seq.append((word, "s"))  # "can you tell me": the assistant, not the person asked about
        return 1
    return 0


def _number_token(token: str, words: list, names: set) -> None:
    """A token opening with a digit: a number with separators, a unit or an ordinal suffix,
    a date or version (every run of digits counts), or an identifier ("3d6", "2fa")."""
    if token.endswith(("'s", "'S")):  # "the 1990's"
        token = token[:-2]
    percent = token.endswith("%")
    if percent:
        token = token[:-1]
    if _DECIMAL_RE.fullmatch(token):
        words.append((_number_key(token), "#"))
    elif match := _NUMBER_UNIT_RE.fullmatch(token):
        number, unit = match.group(1), match.group(2).lower()
        if unit in _ORDINAL_SUFFIXES and number.isdigit():
            words.append(("o" + str(int(number)), "o"))
        else:
            words.append((_number_key(number), "#"))
            words.append((unit, "w"))
    elif _IDENTIFIER_LETTERS_RE.search(token):
        low = token.casefold()
        names.add(low)
        words.append((low, "n"))
        words.extend((_number_key(d), "#") for d in _DIGITS_RE.findall(token))
    else:
        words.extend((_number_key(d), "#") for d in _DIGITS_RE.findall(token))
    if percent:
        words.append(("percent", "w"))


def _number_phrase(words: list[tuple[str, str]], i: int) -> tuple[int, int]:
    """The value of the number words from words[i] on ("twenty five", "a hundred and five",
    "two million"), and the index after them. A unit only follows a tens or scale word, so
    "one or two" and "five six" stay separate numbers."""
    total = current = 0
    last = ""  # "", "unit", "tens", "scale" or "and"
    n = len(words)
    while i < n:
        word = words[i][0]
        if word in _UNITS and last in ("", "tens", "scale", "and"):
            current += _UNITS[word]
            last = "unit"
        elif word in _TENS and last in ("", "scale", "and"):
            current += _TENS[word]
            last = "tens"
        elif word in _SCALES and last in ("", "unit", "tens", "scale"):
            scale = _SCALES[word]
            if scale <= 100:
                current = (current or 1) * scale
            else:
                total += (current or 1) * scale
                current = 0
            last = "scale"
        elif (
            word == "and"
            and last == "scale"
            and i + 1 < n
            and (words[i + 1][0] in _UNITS or words[i + 1][0] in _TENS)
        ):
            last = "and"
        else:
            break
        i += 1
    return total + current, i


# --- Comparisons -----------------------------------------------------------------------


def _match_nouns(only_a: Counter, only_b: Counter, a: _Text, b: _Text) -> None:
    """A noun in "-ing" ("the best programming language") is the same word in the other
    text whatever stands before it there ("which programming language"), but not its stem
    ("an oil painting" / "oil paint")."""
    for noun in a.nouns:
        stem = _key(noun)
        if only_a[noun] and only_b[stem] and noun in b.present:
            only_a[noun] -= 1
            only_b[stem] -= 1
    only_a += Counter()  # drop the zeros
    only_b += Counter()


def _soft_conflict(a: dict[str, set[int]], b: dict[str, set[int]]) -> bool:
    for group, sides in a.items():
        other = b.get(group)
        if other is not None and other != sides:
            return True
    return False


def _tense_conflict(a: set[str], b: set[str]) -> bool:
    return bool(a) and bool(b) and not (a & b)


def _prefix_conflict(a: _Text, b: _Text) -> bool:
    """ "unsafe" / "safe", "disable" / "enable": a negating prefix on a root the other text has."""
    return any(
        root in b.content and key not in b.content for key, root in a.prefixed
    )  # (few: no set needed)


def _role_conflict(a: dict[str, set[str]], b: dict[str, set[str]]) -> bool:
    for key, roles in a.items():
        other = b.get(key)
        if other is None or other == roles:
            continue
        for mine in roles - other:
            for theirs in other - roles:
                if (mine, theirs) in _ROLE_CONFLICTS:
                    return True
    return False


def _quotes_match(a: _Text, b: _Text) -> bool:
    """Every quoted span of `a` is quoted in `b`, or stands verbatim in `b`'s text."""
    for span in a.quoted:
        if span not in b.quoted and not re.search(r"(?<!\w)" + re.escape(span) + r"(?!\w)", b.raw):
            return False
    return True


_SWAPS_EXAMINED = 2000  # pairs of words in the other order; paraphrases have a few dozen


def _roles_swapped(a: _Text, b: _Text) -> bool:
    """Words of both texts changed roles: a preposition moved from one word to another
    ("convert a string to an int" / "convert an int to a string"), two words swapped places
    around a shared relation ("Alice paid Bob" / "Bob paid Alice"), or two adjacent words
    swapped ("milk chocolate" / "chocolate milk"). A clause moved to the front takes its
    preposition along and shares no word between the pair, so "In Python, how do I reverse
    a list" / "How do I reverse a list in Python" passes."""
    keys_a, keys_b = a.keys, b.keys
    if _preposition_moved(a, b) or _preposition_moved(b, a):
        return True
    pos_b = b.positions
    anchors = sorted((p, pos_b[key], key) for key, p in a.positions.items() if key in pos_b)
    by_b = {b1: (a1, x) for a1, b1, x in anchors}
    later: list[int] = []  # the positions in b of the anchors after the current one in a, sorted
    budget = _SWAPS_EXAMINED
    for a1, b1, x in reversed(anchors):
        # Only the pairs in the other order in b: those anchors after x in a and before it in b.
        swapped = later[: bisect_left(later, b1)]
        budget -= len(swapped)
        if budget < 0:
            return True  # texts this scrambled are not paraphrases worth the time to prove it
        for b2 in swapped:
            a2, y = by_b[b2]
            between_a = set(keys_a[a1 + 1 : a2]) - _DETERMINERS
            between_b = set(keys_b[b2 + 1 : b1]) - _DETERMINERS
            if not between_a and not between_b:
                return True  # adjacent in both texts, in the other order
            shared = (between_a & between_b) - _SYMMETRIC
            if shared and _relating(shared, a, a1, a2, x, y) & _relating(shared, b, b2, b1, x, y):
                return True
        insort(later, b1)
    return False


def _relating(words: set[str], text: _Text, start: int, end: int, x: str, y: str) -> set[str]:
    """Those of `words` standing strictly between two positions other than as a preposition of
    x or y themselves (such a preposition moves with its word: "in Python")."""
    found = set()
    for j in range(start + 1, end):
        key = text.keys[j]
        if key in words:
            run = text.runs.get(j)
            if run is None or (x not in run and y not in run):
                found.add(key)
    return found


def _preposition_moved(a: _Text, b: _Text) -> bool:
    """A preposition of `a` attaches in `b` to another word that `a` has too, or is left
    without a word in `b` while its word in `a` is still in `b` ("the father of Zeus" /
    "Zeus the father of")."""
    for preposition, words_a in a.attached.items():
        words_b = b.attached.get(preposition)
        if words_b:
            if (
                words_a != words_b
                and any(x in b.keys for x in words_a - words_b)
                and any(y in a.keys for y in words_b - words_a)
            ):
                return True
        elif preposition in b.stranded and any(x in b.keys for x in words_a):
            return True
    return False
