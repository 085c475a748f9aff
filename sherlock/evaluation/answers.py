"""Reading a model's answer out of its text: every form VLMEvalKit's rule-based reading accepts,
then a few more that are unambiguous.

**What is read** (``answer_text``, ``evaluation.answer_from``): ``conclusion`` reads only the text
of a closed ``<CONCLUSION>`` (none: no answer); ``response`` reads the whole response, as
VLMEvalKit reads a prediction; ``auto`` reads the CONCLUSION when the response has one and the
whole response otherwise, so a model that does not write the four-stage format is scored by
what it says.

**Multiple choice** (``read_option``). First VLMEvalKit's own rules (its ``can_infer``, written
again here from its description, never imported): the response cut into words at
``. ( ) [ ] , : ; ! * # { }`` and spaces; when exactly one option letter is a word and it stands
among the last four words, that letter; else the first "(correct) answer is X" for X in A-D (any
case); else, when the response is at most twice as long as the options' texts together, the one
option whose text it contains. Whatever VLMEvalKit reads we read too, its misreadings included
(docs/evaluation.md), so our scores never fall below its exact-matching ones. Only where it
reads nothing do ours follow, each needing exactly one option: letters named after "answer",
"option" or "choice" (``Answer: (B)``, ``the answer is E``, ``option B is right``); a letter
leading the text (``B, because …``, ``(B) …``, ``**B.** …``); a line holding only a letter; the
text without a lead-in ("The answer is") equal to one option's text.

**Yes/no** (``read_yes_no``). First VLMEvalKit's word rule: lower case, its punctuation marks
removed or replaced by spaces, split at white space; "Yes" when the words hold ``yes`` but not
``no``, "No" the other way round. Words are split only at white space and marks, so an accented
word ("Noël") stays one word. Where that finds neither word (``**Yes**``, ``Yes:`` and ``'No'``
keep their marks in VLMEvalKit's words), the text's letter-and-digit runs are read the same way.

**Free-form answers** (``read_exact``): equal to the reference after normalising case, spaces
and a trailing full stop, or as numbers; also after removing markup and a lead-in. MMMU's
questions without options (``open_choice``): as VLMEvalKit reads them, multiple choice between
the answer (A) and "Other Answers" (B); where that reads nothing, ``read_exact``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sherlock.data.response import extract_answer, normalise_answer

AUTO = "auto"
CONCLUSION = "conclusion"
RESPONSE = "response"
ANSWER_FROM = (AUTO, CONCLUSION, RESPONSE)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NONE_OF_THEM = "Z"  # VLMEvalKit's reading of a refusal: none of the options

# --- what is read --------------------------------------------------------------------------


def answer_text(response: str, answer_from: str) -> str | None:
    """The text an answer is read from; None when ``conclusion`` finds no closed CONCLUSION."""
    if answer_from not in ANSWER_FROM:
        raise ValueError(f"answer_from: one of {', '.join(ANSWER_FROM)}, not {answer_from!r}")
    if answer_from == RESPONSE:
        return response
    conclusion = extract_answer(response)
    if conclusion is None and answer_from == AUTO:
        return response
    return conclusion


# --- VLMEvalKit's rules -------------------------------------------------------------------

# Marks its yes/no reading drops: removed everywhere when one of them touches a space somewhere
# in the text (or the text has a digit,digit group), else replaced by spaces.
_YES_NO_MARKS = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_LONE_FULL_STOP = re.compile(r"(?<!\d)\.(?!\d)")
# VLMEvalKit passes re.UNICODE (32) where re.sub takes its count: only 32 full stops go.
_FULL_STOPS_REMOVED = 32


def vlmevalkit_words(text: str) -> list[str]:
    """The words VLMEvalKit's yes/no reading sees (lower case)."""
    lowered = text.lower()
    glued = _DIGIT_COMMA_DIGIT.search(lowered) is not None
    out = lowered
    for mark in _YES_NO_MARKS:
        touches_space = f"{mark} " in lowered or f" {mark}" in lowered
        out = out.replace(mark, "" if touches_space or glued else " ")
    out = _LONE_FULL_STOP.sub("", out, count=_FULL_STOPS_REMOVED)
    return out.split()


def _yes_no_of(words: Sequence[str] | set[str]) -> str | None:
    yes, no = "yes" in words, "no" in words
    if yes == no:
        return None
    return "Yes" if yes else "No"


def vlmevalkit_yes_no(text: str) -> str | None:
    """VLMEvalKit's yes/no reading: "Yes", "No" or None (its "Unknown")."""
    return _yes_no_of(vlmevalkit_words(text))


_API_FAILURE = "Failed to obtain answer via API"
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_OPTION_MARKS = re.compile(r"[.()\[\],:;!*#{}]")
_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)
_LAST_WORDS = 4  # a lone option letter counts when it stands among the last four words


def _vlmevalkit_letter(text: str, letters: str) -> str | None:
    """VLMEvalKit's option-letter rule: a letter, NONE_OF_THEM, or None (nothing read)."""
    if _API_FAILURE in text:
        return None
    if any(refusal in text for refusal in _REFUSALS):
        return NONE_OF_THEM
    words = _OPTION_MARKS.sub(" ", text).split()
    named = [letter for letter in letters if letter in words]
    if len(named) == 1:
        if words.index(named[0]) >= len(words) - _LAST_WORDS:
            return named[0]
    elif not named and NONE_OF_THEM in words:
        return NONE_OF_THEM
    match = _ANSWER_IS.search(text)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    return None


def _vlmevalkit_text(text: str, choices: Sequence[str], letters: str) -> str | None:
    """VLMEvalKit's option-text rule: the one option whose text a short answer contains."""
    lowered = text.lower()
    if len(lowered) > 2 * sum(len(choice) for choice in choices):
        return None
    found = [letter for letter, choice in zip(letters, choices, strict=True)
             if choice.lower() in lowered]  # fmt: skip
    return found[0] if len(found) == 1 else None


def vlmevalkit_option(text: str, choices: Sequence[str]) -> str | None:
    """VLMEvalKit's multiple-choice reading (``can_infer``): an option letter, NONE_OF_THEM
    (a refusal, or a lone "Z"), or None when it reads nothing (then it would ask GPT)."""
    letters = LETTERS[: len(choices)]
    return _vlmevalkit_letter(text, letters) or _vlmevalkit_text(text, choices, letters)


# --- ours, where VLMEvalKit reads nothing ---------------------------------------------------

_STAGE_TAG = re.compile(r"</?(?:SUMMARY|CAPTION|REASONING|CONCLUSION)>")
_MARKUP = re.compile(r"[*_`]+")
_LEAD_IN = re.compile(
    r"^(?:(?:so|thus|therefore|hence)\s*,?\s+)?(?:the\s+)?(?:(?:correct|final|best|right)\s+)*"
    r"(?:answer|option|choice)\s*(?:is\s*:?|:)\s*",
    re.IGNORECASE,
)
# A letter named by a keyword: "answer is (B)", "Answer: B", "option B", "choice (C)". After
# "answer" an "A" or "I" must be closed by a mark or the line's end, so "Answer: A red circle"
# (an article) names nothing.
_NAMED = re.compile(
    r"\b(?P<key>answer|option|choice)(?:\s+is)?\s*:?\s*[(\[]?\s*(?P<letter>[A-Z])\b"
    r"(?P<after>\s*[)\].:,;!]|\s*$)?",
    re.IGNORECASE | re.MULTILINE,
)
# A letter leading the text: "B", "(B)", "[B]", "B.", "B)", "B:", "B,", "B -" then anything.
_LEADING = re.compile(r"^[(\[]?([A-Z])(?:[)\]]|(?=[.:,;]|\s+-\s|\s*$))")
_ONLY_LETTER = re.compile(r"^\s*[(\[]?([A-Z])[)\]]?\.?\s*$", re.MULTILINE)
_WORD_RUN = re.compile(r"[^\W_]+")


def plain(text: str) -> str:
    """The text without the stage tags (each a line break) and markdown emphasis."""
    return _MARKUP.sub("", _STAGE_TAG.sub("\n", text)).strip()


def without_lead_in(text: str) -> str:
    """The text after a lead-in such as "The answer is" or "Answer:" (markup removed)."""
    return _LEAD_IN.sub("", plain(text)).strip()


def _one(letters: Sequence[str], valid: str) -> str | None:
    found = {letter for letter in letters if letter in valid}
    return found.pop() if len(found) == 1 else None


def _named_letters(text: str, valid: str) -> str | None:
    letters = []
    for match in _NAMED.finditer(text):
        letter = match.group("letter")
        if not letter.isupper() or letter not in valid:
            continue
        if match.group("key").lower() == "answer" and letter in "AI" and not match.group("after"):
            continue  # "Answer: A red circle", "the answer is I think B"
        letters.append(letter)
    return _one(letters, valid)


def _leading_letter(text: str, valid: str) -> str | None:
    first = text.splitlines()[0].strip() if text.strip() else ""
    match = _LEADING.match(first)
    if not match or match.group(1) not in valid:
        return None
    rest = _OPTION_MARKS.sub(" ", first[match.end() :]).split()
    if rest and rest[0] in valid and len(rest[0]) == 1:
        return None  # "A, B and C …": a list, not an answer
    return match.group(1)


def _option_text(text: str, choices: Sequence[str], valid: str) -> str | None:
    said = normalise_answer(without_lead_in(text))
    found = [letter for letter, choice in zip(valid, choices, strict=True)
             if normalise_answer(choice) == said]  # fmt: skip
    return found[0] if len(found) == 1 else None


def our_option(text: str, choices: Sequence[str]) -> str | None:
    """Our multiple-choice reading where VLMEvalKit's reads nothing (see the module doc)."""
    valid = LETTERS[: len(choices)]
    cleaned = plain(text)
    return (
        _named_letters(cleaned, valid)
        or _leading_letter(without_lead_in(cleaned), valid)
        or _one(_ONLY_LETTER.findall(cleaned), valid)
        or _option_text(cleaned, choices, valid)
    )


def read_option(text: str, choices: Sequence[str]) -> str | None:
    """The option letter a text names: VLMEvalKit's reading, else ours; None for none."""
    letter = vlmevalkit_option(text, choices)
    if letter == NONE_OF_THEM:
        return None
    return letter or our_option(text, choices)


def read_yes_no(text: str) -> str | None:
    """"Yes", "No" or None: VLMEvalKit's word rule, else the same on letter-and-digit runs when
    its words hold neither (never when they hold both)."""
    words = vlmevalkit_words(text)
    said = _yes_no_of(words)
    if said is not None or "yes" in words or "no" in words:
        return said
    return _yes_no_of(set(_WORD_RUN.findall(text.lower())))


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def exact_match(prediction: str, answer: str) -> bool:
    """Equal after normalisation (case, spaces, trailing full stop), or equal as numbers."""
    left, right = normalise_answer(prediction), normalise_answer(answer)
    if left == right:
        return True
    a, b = _number(left), _number(right)
    return a is not None and b is not None and a == b


def read_exact(text: str, answer: str) -> bool:
    """A free-form answer equal to the reference: as written, or without markup and lead-in."""
    return exact_match(text, answer) or exact_match(without_lead_in(text), answer)


OTHER_ANSWERS = "Other Answers"  # VLMEvalKit's second option of an MMMU open question


def open_choice(text: str, answer: str) -> str | None:
    """VLMEvalKit's reading of an MMMU question without options: as multiple choice between the
    answer (A) and "Other Answers" (B). Where it reads nothing, ours: "A" when the text without
    markup and lead-in equals the answer; else None."""
    letter = vlmevalkit_option(text, (answer, OTHER_ANSWERS))
    if letter:
        return letter
    return "A" if read_exact(text, answer) else None


def read_open_as_choice(text: str, answer: str) -> bool:
    """Whether an MMMU open question is answered right (``open_choice`` reads "A")."""
    return open_choice(text, answer) == "A"
