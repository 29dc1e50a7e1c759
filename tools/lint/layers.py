#!/usr/bin/env python3
"""Fails when a file in src/ includes a folder above its own in the stage order (an upward include).

The order, lowest first (folders on one rung may not include each other either):
core -> report -> quant, monitor -> kernels -> model -> io -> tokenizer -> data -> retrieval
-> train -> predict -> sweep -> eval -> serve -> cli
"""
import pathlib
import re
import sys

RUNGS = [['core'], ['report'], ['quant', 'monitor'], ['kernels'], ['model'], ['io'], ['tokenizer'], ['data'],
         ['retrieval'], ['train'], ['predict'], ['sweep'], ['eval'], ['serve'], ['cli']]
RANK = {folder: i for i, rung in enumerate(RUNGS) for folder in rung}


def main(root='src'):
    bad = []
    for path in sorted(pathlib.Path(root).rglob('*')):
        if path.suffix not in ('.cpp', '.h'):
            continue
        here = path.relative_to(root).parts[0]
        if here not in RANK:
            bad.append(f'{path}: folder {here} has no place in the stage order (tools/lint/layers.py)')
            continue
        for n, line in enumerate(path.read_text(errors='replace').splitlines(), 1):
            m = re.match(r'\s*#include "([a-z_]+)/', line)
            if m and m.group(1) in RANK and m.group(1) != here and RANK[m.group(1)] >= RANK[here]:
                bad.append(f'{path}:{n}: {here} includes {m.group(1)}, which is not below it')
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
