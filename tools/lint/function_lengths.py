#!/usr/bin/env python3
"""Lists the longest functions in C++ sources (lines from the opening brace to the closing one).

A brace-matching scan with strings, characters and comments skipped: a function is a top-level
or class-level block whose header ends in ')' (plus qualifiers) and is not a control statement.
Usage: function_lengths.py [--max N] [--top K] DIR...  (exit 1 when a function exceeds --max)
"""
import argparse
import pathlib
import re
import sys

CONTROL = re.compile(r'\b(if|for|while|switch|catch|do|else)\s*(\(|$)')


def strip(text):
    """Blanks out comments, strings and character literals, keeping newlines."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(' ' * (j + 1 - i)); i = j + 1
        else:
            out.append(c); i += 1
    return ''.join(out)


def functions(path):
    text = strip(path.read_text(errors='replace'))
    stack = []  # (is_function, start_line, name)
    line = 1
    header_start = 0
    for i, c in enumerate(text):
        if c == '\n':
            line += 1
        elif c == '{':
            header = text[header_start:i].strip()
            in_function = any(f for f, _, _ in stack)
            is_fn = (not in_function and re.search(r'\)\s*(const|noexcept|override|final|mutable|->[^;{]*|\s)*$', header)
                     and not CONTROL.search(header.split('\n')[-1]) and '=' not in header.split('(')[0])
            name = re.findall(r'([~\w:<>]+)\s*\(', header)
            stack.append((bool(is_fn), line, name[0] if name else '?'))
            header_start = i + 1
        elif c == '}':
            if stack:
                is_fn, start, name = stack.pop()
                if is_fn:
                    yield line - start + 1, f'{path}:{start}', name
            header_start = i + 1
        elif c == ';':
            header_start = i + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--max', type=int, default=0)
    ap.add_argument('--top', type=int, default=10)
    ap.add_argument('dirs', nargs='+')
    a = ap.parse_args()
    found = []
    for d in a.dirs:
        root = pathlib.Path(d)
        for p in [root] if root.is_file() else sorted(root.rglob('*')):
            if p.suffix in ('.cpp', '.h', '.cc', '.hpp'):
                found.extend(functions(p))
    found.sort(reverse=True)
    for n, where, name in found[:a.top]:
        print(f'{n:5d}  {where}  {name}')
    if a.max and found and found[0][0] > a.max:
        print(f'function longer than {a.max} lines', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
