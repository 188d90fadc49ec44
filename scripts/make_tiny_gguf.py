#!/usr/bin/env python3
"""Write a tiny, deterministic llama-architecture GGUF (no downloaded weights).

Usage: make_tiny_gguf.py OUT.gguf [--variant short|long] [--pad-mb N]

Needs the PyPI package ``gguf==0.19.0`` (and numpy).  The file is about 520 KB:
2 layers, width 64, a 354-token SentencePiece vocabulary with byte fallback.

The residual stream is a 'bigram' lookup: the blocks have zero output projections,
so the next-token logits depend only on the class of the last token:

  any other token -> "Hey now!" ...
  '{' -> '}' ; '}' / ']' -> </s> ; '"' -> '"' ; ':' / ',' -> '"' ; '[' -> ']'

and after the final '!':

  variant ``short`` -> </s>            : answers "Hey now!" and stops (done_reason "stop")
  variant ``long``  -> byte token ' '  : the space is an 'other' token, so 'H' follows and
                                         it generates "Hey now! Hey now! ..." until
                                         num_predict (done_reason "length")

(The space after '!' is the byte-fallback token <0x20>, not the SentencePiece '\u2581'
used inside "Hey now", whose successor is 'n'.)

A weaker 'base' preference (EOS > } > ] > " > { > , > : > 1 > [ ...) decides when a
JSON grammar forbids the bigram choice, so format=json / JSON-schema grammars finish
in a handful of tokens with both variants.  The output is byte-for-byte reproducible.

``--pad-mb N`` makes the file about N MB bigger without changing a single answer: the
feed-forward blocks get wider (their output projections stay zero, so they still add
nothing).  Used to make a model big enough that a pull's progress is visible (tests of
``%ollama pull`` against a local registry).  llama.cpp refuses files with tensors it does
not know, so the padding has to live in tensors the architecture has.
"""

import argparse
import itertools
import sys

try:
    import gguf
    import numpy as np
except ImportError as e:  # pragma: no cover
    sys.exit(f"make_tiny_gguf.py needs the PyPI packages gguf==0.19.0 and numpy ({e})")

VARIANTS = ("short", "long")


def build(out: str, variant: str = "short", pad_mb: float = 0.0) -> int:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (expected one of {VARIANTS})")

    # ---- vocabulary (SentencePiece-style, byte fallback) ----
    tokens, scores, types = [], [], []

    def add(tok, ttype, score=0.0):
        tokens.append(tok.encode("utf-8"))
        scores.append(score)
        types.append(ttype)
        return len(tokens) - 1

    UNK = add("<unk>", gguf.TokenType.UNKNOWN)
    BOS = add("<s>", gguf.TokenType.CONTROL)
    EOS = add("</s>", gguf.TokenType.CONTROL)
    byte_tok = {}
    for b in range(256):
        byte_tok[b] = add(f"<0x{b:02X}>", gguf.TokenType.BYTE)
    tid = {}
    for i, ch in enumerate(["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]):
        tid[ch] = add(ch, gguf.TokenType.NORMAL, score=-float(i + 1))
    n_vocab = len(tokens)

    # ---- bigram rules by class ----
    chain = ["H", "e", "y", "\u2581", "n", "o", "w", "!"]
    rules = {}  # current token id -> next token id
    for a, b in itertools.pairwise(chain):
        rules[tid[a]] = tid[b]
    if variant == "short":
        rules[tid["!"]] = EOS
    else:
        # byte token for ' ': not a rule class, so it falls in class 'other' -> 'H'
        rules[tid["!"]] = byte_tok[0x20]
    rules[tid["{"]] = tid["}"]
    rules[tid["}"]] = EOS
    rules[tid["]"]] = EOS
    rules[tid["["]] = tid["]"]
    rules[tid['"']] = tid['"']
    rules[tid[":"]] = tid['"']
    rules[tid[","]] = tid['"']
    classes = sorted(rules)  # one embedding dim per class; dim 1 = 'other'
    OTHER_NEXT = tid["H"]

    n_embd, n_head, n_head_kv, n_ff, n_layer, n_ctx = 64, 4, 4, 128, 2, 4096
    if pad_mb > 0:
        # three float32 [n_ff x n_embd] matrices per layer; round to a multiple of 32
        n_ff += int(pad_mb * 1_000_000 / (3 * 4 * n_embd * n_layer)) // 32 * 32
    head_dim = n_embd // n_head
    assert 2 + len(classes) <= n_embd

    emb = np.zeros((n_vocab, n_embd), np.float32)
    emb[:, 0] = 1.0  # constant 'base' dim
    emb[:, 1] = 1.0  # class 'other' by default
    for k, t in enumerate(classes):
        emb[t, 1] = 0.0
        emb[t, 2 + k] = 1.0
    # every row has exactly two ones -> RMSNorm scale is the same for all tokens
    s = np.sqrt(n_embd / 2.0)

    B = 5000.0  # bigram strength (logit units)
    base_order = [
        EOS,
        tid["}"],
        tid["]"],
        tid['"'],
        tid["{"],
        tid[","],
        tid[":"],
        tid["1"],
        tid["["],
        tid["t"],
        tid["0"],
    ]
    W = np.zeros((n_vocab, n_embd), np.float32)
    for r, t in enumerate(base_order):
        W[t, 0] = (1000.0 - 80.0 * r) / s
    W[OTHER_NEXT, 1] = B / s
    for k, t in enumerate(classes):
        W[rules[t], 2 + k] = B / s

    rng = np.random.default_rng(0)

    def rnd(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = gguf.GGUFWriter(out, "llama")
    w.add_name("tiny-bigram-test" if variant == "short" else "tiny-bigram-test-long")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    w.add_tensor("token_embd.weight", emb)
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "attn_q.weight", rnd(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", rnd(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_v.weight", rnd(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_output.weight", np.zeros((n_embd, n_embd), np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "ffn_gate.weight", rnd(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rnd(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", np.zeros((n_embd, n_ff), np.float32))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", W)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_vocab


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="tiny.gguf", help="output GGUF path")
    ap.add_argument(
        "--variant",
        choices=VARIANTS,
        default="short",
        help="short: 'Hey now!' then stop; long: 'Hey now! Hey now! ...' forever",
    )
    ap.add_argument("--pad-mb", type=float, default=0.0, help="make the file about this many MB bigger (same answers)")
    args = ap.parse_args(argv)
    n_vocab = build(args.out, args.variant, args.pad_mb)
    print(f"wrote {args.out}: variant={args.variant} vocab={n_vocab} embd=64 layers=2 pad={args.pad_mb:g} MB")


if __name__ == "__main__":
    main()
