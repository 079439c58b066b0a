#!/usr/bin/env python3
"""An auditor's independent implementation of the draw selection (draw-engine/src/select.rs),
in plain Python with no dependencies: ChaCha20 keyed with SHA-256("raffle-draw/v1" || seed ||
seal head hash), 64-bit little-endian words, rejection sampling, a partial Fisher-Yates shuffle.

    scripts/draw_reference.py SEED_HEX SEAL_HEAD_HEX ELIGIBLE_COUNT WINNERS [WINNERS ...]

prints, per prize in position order, the 0-based positions of the winners in the eligible set
ordered by draw number (the barrel list of `raffle draw barrel`, or the audit export's tickets).
With no arguments it checks itself against the vector pinned in select.rs."""
import hashlib
import struct
import sys

MASK = 0xFFFFFFFF


def _rotl(v, c):
    return ((v << c) & MASK) | (v >> (32 - c))


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & MASK; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK; s[b] = _rotl(s[b] ^ s[c], 7)


def _block(key, counter):
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key),
             counter & MASK, counter >> 32, 0, 0]
    w = state[:]
    for _ in range(10):
        _quarter(w, 0, 4, 8, 12); _quarter(w, 1, 5, 9, 13); _quarter(w, 2, 6, 10, 14); _quarter(w, 3, 7, 11, 15)
        _quarter(w, 0, 5, 10, 15); _quarter(w, 1, 6, 11, 12); _quarter(w, 2, 7, 8, 13); _quarter(w, 3, 4, 9, 14)
    return [(a + b) & MASK for a, b in zip(w, state)]


def _u64s(key):
    counter = 0
    while True:
        words = _block(key, counter)
        for i in range(0, 16, 2):
            yield words[i] | (words[i + 1] << 32)
        counter += 1


def winners(seed, seal_head, n, counts):
    stream = _u64s(hashlib.sha256(b"raffle-draw/v1" + seed + seal_head).digest())
    top = 2**64 - 1
    moved, taken, out = {}, 0, []
    for count in counts:
        prize = []
        for _ in range(count):
            if taken >= n:
                break
            bound = n - taken
            reject_from = top - ((top % bound) + 1) % bound
            x = next(stream)
            while x > reject_from:
                x = next(stream)
            j = taken + x % bound
            at_j, at_k = moved.get(j, j), moved.get(taken, taken)
            moved[j] = at_k
            moved.pop(taken, None)
            taken += 1
            prize.append(at_j)
        out.append(prize)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 1:
        got = winners(bytes(32), bytes(32), 10_000_000, [3])
        assert got == [[2452960, 4865490, 3818564]], got
        print("reference vector matches")
    else:
        seed, head = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
        for position, prize in enumerate(winners(seed, head, int(sys.argv[3]), [int(c) for c in sys.argv[4:]]), 1):
            print(f"prize {position}: {prize}")
