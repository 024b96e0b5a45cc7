"""The PyTorch tutorial's translator, as the tutorial writes it ("NLP From Scratch: Translation
with a Sequence to Sequence Network and Attention", intermediate_source/
seq2seq_translation_tutorial.py): word-level languages with SOS=0 and EOS=1, every input ending
with EOS and padded with zeros, `EncoderRNN`, `BahdanauAttention` and `AttnDecoderRNN`.

Below them, what a user adds to serve it: `Encoder` and `DecoderStep` keep rnnserve's seq2seq
contract around the tutorial's modules (their weights unchanged), masking the padding that the
tutorial's attention reads. Training and evaluation are the tutorial's, at tiny sizes.
"""

# ruff: noqa: RUF005, RUF059 (the tutorial's own code, kept as it is written)
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOS_token = 0
EOS_token = 1
MAX_LENGTH = 10


class Lang:
    def __init__(self, name):
        self.name = name
        self.word2index = {}
        self.word2count = {}
        self.index2word = {0: "SOS", 1: "EOS"}
        self.n_words = 2  # Count SOS and EOS

    def addSentence(self, sentence):
        for word in sentence.split(" "):
            self.addWord(word)

    def addWord(self, word):
        if word not in self.word2index:
            self.word2index[word] = self.n_words
            self.word2count[word] = 1
            self.index2word[self.n_words] = word
            self.n_words += 1
        else:
            self.word2count[word] += 1


class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size

        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)

        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)

        return context, weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long).fill_(SOS_token)
        decoder_hidden = encoder_hidden
        decoder_outputs = []
        attentions = []

        for i in range(MAX_LENGTH):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)

            if target_tensor is not None:
                # Teacher forcing: Feed the target as the next input
                decoder_input = target_tensor[:, i].unsqueeze(1)  # Teacher forcing
            else:
                # Without teacher forcing: use its own predictions as the next input
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()  # detach from history as input

        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        attentions = torch.cat(attentions, dim=1)

        return decoder_outputs, decoder_hidden, attentions

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))

        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)

        output, hidden = self.gru(input_gru, hidden)
        output = self.out(output)

        return output, hidden, attn_weights


def indexesFromSentence(lang, sentence):
    return [lang.word2index[word] for word in sentence.split(" ")]


def tensorFromSentence(lang, sentence):
    indexes = indexesFromSentence(lang, sentence)
    indexes.append(EOS_token)
    return torch.tensor(indexes, dtype=torch.long).view(1, -1)


def evaluate(encoder, decoder, sentence, input_lang, output_lang):
    with torch.no_grad():
        input_tensor = tensorFromSentence(input_lang, sentence)

        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, decoder_hidden, decoder_attn = decoder(encoder_outputs, encoder_hidden)

        _, topi = decoder_outputs.topk(1)
        decoded_ids = topi.squeeze()

        decoded_words = []
        for idx in decoded_ids:
            if idx.item() == EOS_token:
                decoded_words.append("<EOS>")
                break
            decoded_words.append(output_lang.index2word[idx.item()])
    return decoded_words, decoder_attn


def train(pairs, input_lang, output_lang, hidden_size=16, epochs=60, seed=0):
    """The tutorial's get_dataloader and train_epoch (Adam, NLLLoss), on a tiny corpus."""
    torch.manual_seed(seed)
    encoder = EncoderRNN(input_lang.n_words, hidden_size)
    decoder = AttnDecoderRNN(hidden_size, output_lang.n_words)
    n = len(pairs)
    input_ids = torch.zeros((n, MAX_LENGTH), dtype=torch.long)
    target_ids = torch.zeros((n, MAX_LENGTH), dtype=torch.long)
    for idx, (inp, tgt) in enumerate(pairs):
        inp_ids = indexesFromSentence(input_lang, inp) + [EOS_token]
        tgt_ids = indexesFromSentence(output_lang, tgt) + [EOS_token]
        input_ids[idx, : len(inp_ids)] = torch.tensor(inp_ids)
        target_ids[idx, : len(tgt_ids)] = torch.tensor(tgt_ids)
    encoder_optimizer = torch.optim.Adam(encoder.parameters(), lr=0.01)
    decoder_optimizer = torch.optim.Adam(decoder.parameters(), lr=0.01)
    criterion = nn.NLLLoss()
    for _ in range(epochs):
        encoder_optimizer.zero_grad()
        decoder_optimizer.zero_grad()
        encoder_outputs, encoder_hidden = encoder(input_ids)
        decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_ids)
        loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), target_ids.view(-1))
        loss.backward()
        encoder_optimizer.step()
        decoder_optimizer.step()
    return encoder.eval(), decoder.eval()


# -- what the user adds: rnnserve's seq2seq contract around the tutorial's modules ----------


class Encoder(nn.Module):
    """(ids [B, S], lengths [B]) -> (memory [B, S, H], state [B, H])."""

    def __init__(self, rnn: EncoderRNN) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor):
        memory, _ = self.rnn(ids)  # a forward GRU: padding after an input leaves it alone
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, memory.shape[-1])
        return memory, memory.gather(1, last).squeeze(1)  # the state after the last real token


class DecoderStep(nn.Module):
    """The tutorial's forward_step on a batch, its attention blind to padding:
    (token [B], state [B, H], memory [B, S, H], mask [B, S]) -> (logits, state, attention)."""

    def __init__(self, rnn: AttnDecoderRNN) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, token, state, memory, mask):
        rnn, attention = self.rnn, self.rnn.attention
        embedded = rnn.dropout(rnn.embedding(token.unsqueeze(1)))  # (B, 1, H)
        query = state.unsqueeze(1)  # (B, 1, H)
        scores = attention.Va(torch.tanh(attention.Wa(query) + attention.Ua(memory))).squeeze(2)
        weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), memory)  # (B, 1, H)
        output, hidden = rnn.gru(torch.cat((embedded, context), dim=2), state.unsqueeze(0))
        return rnn.out(output.squeeze(1)), hidden.squeeze(0), weights


class Translator(nn.Module):
    def __init__(self, input_words: int, output_words: int, hidden_size: int = 16) -> None:
        super().__init__()
        self.encoder = Encoder(EncoderRNN(input_words, hidden_size))
        self.decoder = DecoderStep(AttnDecoderRNN(hidden_size, output_words))


def build(**config) -> Translator:
    """`--module tests/user_models/tutorial_seq2seq.py:build`; the weights are the state_dict
    of Translator, whose submodules hold the tutorial's own."""
    return Translator(**config)
