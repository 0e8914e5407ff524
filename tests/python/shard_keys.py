"""The shard keys of a stream as docs/wire-format.md gives them for
producers in other languages ("A sharded stream"); prints them as JSON for
each count given: `shard_keys.py <stream key> <count>...`."""

import binascii
import json
import sys


def shard_keys(stream_key, count):
    if count == 1:
        return [stream_key]
    def slot(tag):
        return binascii.crc_hqx(tag.encode(), 0) % 16384
    keys = []
    for k in range(count):
        start, end = k * 16384 // count, (k + 1) * 16384 // count
        width = end - start
        wanted = range(start + width // 4, start + width - width // 4)
        tag, j = str(k), 0
        while slot(tag) not in wanted:
            j += 1
            tag = f"{k}.{j}"
        keys.append(f"{stream_key}:{{{tag}}}")
    return keys


if __name__ == "__main__":
    key = sys.argv[1]
    print(json.dumps({count: shard_keys(key, int(count)) for count in sys.argv[2:]}))
