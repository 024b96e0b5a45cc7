"""Property tests of the preprocessing the service shares with training."""

from hypothesis import given
from hypothesis import strategies as st

from contract.words import UNK_ID, Vocabulary, tokenize

VOCAB = Vocabulary.build([["good", "bad", "film", ",", "n't", "'s"]], min_freq=1)


@given(st.text())
def test_any_unicode_string_tokenises_without_error(text):
    tokens = tokenize(text)
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    ids = VOCAB.encode(tokens)
    assert all(0 < i < len(VOCAB) for i in ids)


@given(st.lists(st.sampled_from(["good", "bad", "film", ",", "is", "n't", "it", "'s", "."])))
def test_joined_tokens_tokenise_back_to_themselves(tokens):
    assert tokenize(" ".join(tokens)) == tokens


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll"]), min_size=1))
def test_unknown_words_become_the_unknown_id_never_an_error(word):
    ids = VOCAB.encode(tokenize(word))
    assert all(i == UNK_ID or VOCAB.tokens[i] in tokenize(word) for i in ids)
