"""Text for the toy Rho-1 experiment (no downloads, seeded). Writes JSONL shards ({id, text}) to OUT:

  ref_train.jsonl  target-domain text for the reference model
  corpus.jsonl     the training corpus: target-domain text mixed with noise (half the characters, ~60% of tokens)
  heldout.jsonl    unseen documents of every kind, for evaluation

Target domain: docstrings of the Python 3.11 standard library (technical English prose), split by document
into the three sets, so no held-out document is trained on. Noise kinds (the id prefix names the kind):
  random       random character strings and base64 blobs: unlearnable, the reference finds them hard too
  boilerplate  cookie banners, nav menus, "click here", keyword spam from a few templates: easy to memorise
  structured   CSV number tables, HTML markup, minified JavaScript
  offdomain    license texts (/usr/share/common-licenses): natural English of another domain
"""
import ast
import base64
import glob
import json
import os
import random
import re
import sys

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = random.Random(20240411)


def paragraphs(text):
    out = []
    for p in re.split(r'\n\s*\n', text):
        p = re.sub(r'\s+', ' ', p).strip()
        if len(p) >= 40 and sum(c.isalpha() for c in p) > 0.6 * len(p):
            out.append(p)
    return out


def grouped(paras, sizes):
    """Runs of consecutive paragraphs as documents."""
    docs, i = [], 0
    while i < len(paras):
        k = rng.choice(sizes)
        docs.append('\n\n'.join(paras[i:i + k]))
        i += k
    return docs


target = []
for f in sorted(glob.glob('/usr/lib/python3.11/**/*.py', recursive=True)):
    if '/test' in f or 'idlelib' in f or 'site-packages' in f:
        continue
    try:
        with open(f, encoding='utf-8') as fh:
            tree = ast.parse(fh.read())
    except Exception:
        continue
    paras = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) >= 80:
                d = '\n'.join(l for l in d.split('\n') if not l.strip().startswith(('>>>', '...')))
                paras.extend(paragraphs(d))
    target.extend(grouped(paras, [1, 2, 3, 4, 6]))
target = sorted(set(target))
rng.shuffle(target)

offdomain = []
for f in sorted(glob.glob('/usr/share/common-licenses/*')):
    if os.path.isfile(f):
        with open(f, encoding='utf-8', errors='replace') as fh:
            offdomain.extend(grouped(paragraphs(fh.read()), [1, 2, 3]))
offdomain = sorted(set(offdomain))
rng.shuffle(offdomain)

WORDS = 'home about products services blog contact login register cart account help faq privacy terms careers press news shop deals support'.split()
BANNERS = [
    'We use cookies to improve your experience. By continuing to browse you agree to our use of cookies. Accept all | Reject | Manage preferences',
    'This website uses cookies to personalise content and ads, to provide social media features and to analyse our traffic. [Accept] [Decline] [Settings]',
    'COOKIE NOTICE: our partners store and/or access information on your device. Click "I agree" to continue. Privacy Policy | Cookie Policy',
]
ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!@#$%^&*()_+-=[]{};:,./<>?~`|'


def randchars(n):
    return ''.join(rng.choice(ALPHABET) for _ in range(n))


def random_doc():
    if rng.random() < 0.5:
        return randchars(rng.randint(100, 900))
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randint(80, 700)))).decode()


def boilerplate_doc():
    parts = []
    for _ in range(rng.randint(2, 6)):
        k = rng.randrange(4)
        if k == 0:
            parts.append(rng.choice(BANNERS))
        elif k == 1:
            parts.append(' | '.join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(6, 20))))
        elif k == 2:
            parts.append(' '.join(rng.choice(['Click here!', 'Read more >>', 'Subscribe now!', 'Download FREE', 'Share on Facebook', 'Next page', 'Sign up for our newsletter']) for _ in range(rng.randint(4, 12))))
        else:
            kw = ['cheap', 'casino', 'bitcoin', 'free', 'loan', 'best', 'price', 'buy', 'online', 'now', 'discount']
            parts.append(' '.join(rng.choice(kw) for _ in range(rng.randint(20, 80))))
    return '\n'.join(parts)


def structured_doc():
    k = rng.randrange(3)
    if k == 0:
        cols = rng.randint(3, 7)
        lines = [','.join('col%d' % j for j in range(cols))]
        lines += [','.join(str(round(rng.uniform(-1000, 1000), rng.randint(0, 3))) for _ in range(cols)) for _ in range(rng.randint(8, 30))]
        return '\n'.join(lines)
    if k == 1:
        return ''.join('<div class="%s"><a href="/%s?id=%d">%s</a></div>\n' % (rng.choice(WORDS), rng.choice(WORDS), rng.randint(0, 99999), rng.choice(WORDS)) for _ in range(rng.randint(4, 14)))
    return ''.join('function %s(a,b){return a%sb?%d:%s(b,a-1)};' % (randchars(3), rng.choice('+-*/<>'), rng.randint(0, 999), randchars(2)) for _ in range(rng.randint(5, 20)))


def take(docs, chars):
    out, n = [], 0
    while docs and n < chars:
        out.append(docs.pop())
        n += len(out[-1])
    return out


# Sizes in characters (about 2.5-4 characters per token with the fixture tokenizer).
held_target = take(target, 30_000)
ref_train = take(target, 350_000)
corpus_target = take(target, 300_000)
held_off = take(offdomain, 10_000)
corpus_off = take(offdomain, 70_000)


def generated(gen, chars):
    out, n = [], 0
    while n < chars:
        out.append(gen())
        n += len(out[-1])
    return out


corpus = [('target', t) for t in corpus_target] + [('offdomain', t) for t in corpus_off]
corpus += [('random', t) for t in generated(random_doc, 50_000)]
corpus += [('boilerplate', t) for t in generated(boilerplate_doc, 90_000)]
corpus += [('structured', t) for t in generated(structured_doc, 70_000)]
rng.shuffle(corpus)
held = [('target', t) for t in held_target] + [('offdomain', t) for t in held_off]
held += [('random', t) for t in generated(random_doc, 5_000)]
held += [('boilerplate', t) for t in generated(boilerplate_doc, 8_000)]
held += [('structured', t) for t in generated(structured_doc, 6_000)]


def write(name, docs):
    with open(os.path.join(OUT, name), 'w', encoding='utf-8') as f:
        for i, (kind, text) in enumerate(docs):
            f.write(json.dumps({'id': '%s-%05d' % (kind, i), 'text': text}, ensure_ascii=False) + '\n')
    by = {}
    for kind, text in docs:
        by[kind] = by.get(kind, 0) + len(text)
    print('make_data: %s: %d docs, chars by kind %s' % (name, len(docs), json.dumps(by, sort_keys=True)), file=sys.stderr)


write('ref_train.jsonl', [('target', t) for t in ref_train])
write('corpus.jsonl', corpus)
write('heldout.jsonl', held)
