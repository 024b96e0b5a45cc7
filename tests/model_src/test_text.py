from pathlib import Path

from contract.words import PAD, UNK, UNK_ID, Vocabulary, tokenize


def test_tokenize_splits_like_sst2():
    assert tokenize("It's a GREAT film, isn't it?") == [
        "it",
        "'s",
        "a",
        "great",
        "film",
        ",",
        "is",
        "n't",
        "it",
        "?",
    ]


def test_tokenize_is_idempotent_on_sst2_text():
    text = "if you 've ever entertained the notion , it does n't work ."
    assert tokenize(" ".join(tokenize(text))) == tokenize(text) == text.split()


def test_tokenize_keeps_unicode_words_and_drops_whitespace():
    assert tokenize("Café\u00a0crème\n\t!") == ["café", "crème", "!"]
    assert tokenize("   \n") == []


def test_unknown_words_map_to_the_unknown_id():
    vocab = Vocabulary.build([["good", "good", "bad"]], min_freq=2)
    assert vocab.tokens == (PAD, UNK, "good")
    assert vocab.encode(["good", "never-seen"]) == [2, UNK_ID]


def test_vocabulary_round_trips_through_a_file(tmp_path: Path):
    vocab = Vocabulary.build([["b", "a", "a", "b", "c"]], min_freq=1)
    vocab.save(tmp_path / "vocab.txt")
    assert Vocabulary.load(tmp_path / "vocab.txt") == vocab
    assert vocab.tokens[2:] == ("a", "b", "c")  # frequency, then alphabetical
