"""Build sample_corpus/: one Markdown file per Wikipedia article, from the shared wiki_en paragraphs.

The articles are a fixed, hand-picked list on varied topics (science, history, sport, places, music,
technology, books, society) so the demo corpus is reproducible. Text is used as the dump gives it: the
article title as the `#` heading and its paragraphs in order; nothing is added or rewritten.

    python benchmarks/make_sample_corpus.py [--data PARAGRAPHS_JSONL] [--out FOLDER]
"""

import argparse
import html
import json
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wiki_en" / "paragraphs.jsonl"
DEFAULT_OUT = ROOT / "sample_corpus"
ARTICLES = {
    "Science and nature": [
        "Malacidin",
        "Sthenoteuthis oualaniensis",
        "Lid tectonics",
        "Fugitive gas emissions",
        "Innate immune defect",
        "Strabops",
        "Rubus gunnianus",
        "(505657) 2014 SR339",
        "Integral bridge",
    ],
    "History": [
        "Battle of Kissingen",
        "Battle of Pyongyang (1592)",
        "Action of 2 January 1783",
        "Byzantine Empire under the Theodosian dynasty",
        "Fasti Potentini",
    ],
    "Sport": [
        "Boswell (horse)",
        "ACF Fiorentina–Juventus F.C. rivalry",
        "2019 Masters (snooker)",
        "Seattle Kraken",
    ],
    "Places and buildings": [
        "Royal Terrace, Edinburgh",
        "Ben Nevis and Glen Coe National Scenic Area",
        "Kasselburg",
        "Salinas Dam",
        "Murtoa Stick Shed",
    ],
    "Music": [
        "Divertimenti for six winds (Mozart)",
        "Dirty Computer",
        "Netta Barzilai",
    ],
    "Technology": [
        "The Update Framework (TUF)",
        "Genode",
        "Video games in Indonesia",
    ],
    "Books": [
        "Enlightenment Now",
        "The Railway Detective",
    ],
    "Society, language and myth": [
        "Deities and fairies of fate in Slavic mythology",
        "Binnen-I",
    ],
}
README = """# Sample corpus

{count} English Wikipedia articles, one Markdown file each, for trying l2v-search out:

```bash
l2v-search index sample_corpus
l2v-search search "new antibiotic found in dirt"
```

Source: the `wiki_en` paragraphs of English Wikipedia (WikiExtractor output, about 2021), as kept in the
project's shared data folder. Each file holds the article's title as its heading and the paragraphs the dump
has for it, in order, unchanged. Rebuild with `python benchmarks/make_sample_corpus.py`.

License: the text is from Wikipedia and is available under the Creative Commons Attribution-ShareAlike 3.0
license (CC BY-SA 3.0, https://creativecommons.org/licenses/by-sa/3.0/); attribution to the Wikipedia
contributors of each article (see its history on https://en.wikipedia.org/). This folder as a whole is
shared under the same license.

Articles:

{listing}
"""


def slug(title: str) -> str:
    """A file name from a title: ASCII letters and digits joined by hyphens."""
    separated = re.sub(r"[^\w]+", " ", title)  # punctuation such as en dashes separates words too
    ascii_title = unicodedata.normalize("NFKD", separated).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")


def load_articles(data: Path) -> dict[str, list[str]]:
    """Paragraphs by (unescaped) title, in the order of their `<page>-<n>` ids."""
    numbered: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with data.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            number = int(record["_id"].rsplit("-", 1)[1])
            numbered[html.unescape(record["title"])].append((number, html.unescape(record["text"]).strip()))
    return {title: [text for _, text in sorted(paragraphs)] for title, paragraphs in numbered.items()}


def build(data: Path, out: Path) -> int:
    articles = load_articles(data)
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    words = 0
    for topic, titles in ARTICLES.items():
        listing.append(f"- {topic}:")
        for title in titles:
            paragraphs = articles[title]
            name = f"{slug(title)}.md"
            (out / name).write_text(f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
            words += sum(len(paragraph.split()) for paragraph in paragraphs)
            listing.append(f"  - [{title}]({name})")
    count = sum(len(titles) for titles in ARTICLES.values())
    (out / "README.md").write_text(README.format(count=count, listing="\n".join(listing)), encoding="utf-8")
    print(f"wrote {count} articles ({words} words) and README.md to {out}")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    build(args.data, args.out)


if __name__ == "__main__":
    main()
