"""Loader for Amazon Review Data (2018): reviews or ratings plus product metadata -> `Dataset`.

Reviews come from a 5-core JSON-lines file (`*_5.json.gz`: reviewerID, asin, overall,
unixReviewTime) or a ratings-only CSV without header (asin, reviewerID, rating, timestamp); the
format is read from the content, gzip from the magic bytes. Metadata is JSON lines (title, brand,
category, price, description, also_buy, also_view). Turning the dataset into examples is done by
`promptrec.protocols`; the search protocol lives in `promptrec.search`.

The upstream files have known defects, each repaired and counted in an `AmazonReport`, never
silently: HTML-fragment or missing titles (rebuilt from the description's first words, else brand and
category, else the ASIN), duplicated metadata lines (identical: dropped; differing: first kept), repeated
(user, item) ratings (latest kept), unparsable prices (left empty), items reviewed but without
metadata (kept as "item <asin>", or dropped with their reviews).

Bad lines (not a JSON object, a missing or malformed required key) are skipped and counted, and
the report names the first. Loading fails with a `DataError` naming file and line when the first
record is bad (the file is not this format at all), when more than max(10, 1%) of the lines are
bad, or when a gzip file is truncated or corrupt (that tolerance is `promptrec.line_files`').
"""

from __future__ import annotations

import csv
import html
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import LineErrors, json_object, raw_lines, text_lines
from promptrec.data.dataset import Dataset, Interaction, Item, User

REVIEW_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")


CSV_COLUMNS = ("asin", "reviewerID", "rating", "timestamp")


MISSING_META_POLICIES = ("keep", "drop")


DESCRIPTION_CHARS = 200  # descriptions are cut to about this many characters (prompt budget)


TITLE_CHARS = 200


DESCRIPTION_TITLE_WORDS = 8  # at most this many words of the description's first sentence stand in for a title


_TAG = re.compile(r"<[^>]*>?")  # a tag, or an unclosed fragment such as '<span class="a-size-medium"'


_SPACE = re.compile(r"\s+")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


_PRICE = re.compile(r"^\$?\s*([\d,]+(?:\.\d+)?)(\s*-\s*\$?\s*[\d,]+(?:\.\d+)?)?$")


@dataclass
class AmazonReport:
    """What the loader read, repaired, dropped and why; printed by the CLI, saved as load_report.json."""

    reviews_path: str
    meta_path: str | None
    reviews_format: str = ""  # "json" (5-core reviews) or "csv" (ratings only)
    num_review_lines: int = 0
    num_reviews: int = 0  # interactions kept
    num_users: int = 0
    num_items: int = 0
    num_repeated_pairs: int = 0  # extra ratings of an already-rated (user, item); the latest is kept
    num_duplicate_rows: int = 0  # of those, lines repeating an earlier line exactly (user, item, rating, time)
    bad_review_lines: list[str] = field(default_factory=list)  # "line N: reason", first 5
    num_bad_review_lines: int = 0
    num_meta_lines: int = 0
    num_meta_asins: int = 0
    num_meta_duplicates: int = 0  # lines repeating an ASIN already read
    num_meta_duplicates_differing: int = 0  # of those, lines whose content differs (first kept)
    bad_meta_lines: list[str] = field(default_factory=list)
    num_bad_meta_lines: int = 0
    missing_meta: str = "keep"
    num_items_without_meta: int = 0
    num_reviews_without_meta_dropped: int = 0
    title_sources: dict = field(default_factory=dict)  # title, brand+category, description, asin, no metadata
    num_prices_missing: int = 0
    num_price_ranges: int = 0  # "$10.00 - $20.00": the low end is kept
    unparsable_prices: list[str] = field(default_factory=list)  # first 3
    num_prices_unparsable: int = 0
    num_links_kept: int = 0  # also_buy/also_view entries naming a reviewed item
    num_links_outside: int = 0  # entries naming products nobody reviewed; dropped

    @property
    def num_titles_repaired(self) -> int:
        return sum(n for source, n in self.title_sources.items() if source not in ("title", "no metadata"))

    def to_dict(self) -> dict:
        return asdict(self) | {"num_titles_repaired": self.num_titles_repaired}

    def summary(self) -> str:
        return (
            f"loaded {self.num_reviews} {'reviews' if self.reviews_format == 'json' else 'ratings'}, "
            f"{self.num_users} users, {self.num_items} items; metadata: {self.num_meta_lines} lines, "
            f"{self.num_meta_asins} ASINs; {self.num_links_kept} also_buy/also_view links between reviewed items"
        )

    def warnings(self) -> list[str]:
        """One line per repair or loss, with counts; empty when the files were clean."""
        lines = []
        if self.num_bad_review_lines:
            lines.append(
                f"{self.reviews_path}: skipped {self.num_bad_review_lines} malformed lines "
                f"({'; '.join(self.bad_review_lines)})"
            )
        if self.num_repeated_pairs:
            lines.append(
                f"{self.reviews_path}: {self.num_repeated_pairs} repeated (user, item) ratings "
                f"({self.num_duplicate_rows} exact duplicate lines); kept the latest of each"
            )
        if self.num_bad_meta_lines:
            examples = "; ".join(self.bad_meta_lines)
            lines.append(f"{self.meta_path}: skipped {self.num_bad_meta_lines} malformed lines ({examples})")
        if self.num_meta_duplicates:
            lines.append(
                f"{self.meta_path}: {self.num_meta_duplicates} duplicate lines removed "
                f"({self.num_meta_lines} lines -> {self.num_meta_asins} ASINs; "
                f"{self.num_meta_duplicates_differing} differed from the first, which was kept)"
            )
        lines += self._item_warnings()
        return lines

    def _item_warnings(self) -> list[str]:
        lines = []
        if self.num_items_without_meta:
            fate = (
                "kept with the title 'item <asin>'"
                if self.missing_meta == "keep"
                else f"dropped with their {self.num_reviews_without_meta_dropped} reviews"
            )
            lines.append(f"{self.num_items_without_meta} reviewed items have no metadata; {fate}")
        repaired = {k: v for k, v in self.title_sources.items() if k in ("description", "brand+category") and v}
        placeholders = self.title_sources.get("asin", 0)
        if repaired or placeholders:
            how = ", ".join(f"{source} {n}" for source, n in repaired.items()) or "nothing"
            left = f"; {placeholders} left as 'item <asin>' (no description, brand or category)" if placeholders else ""
            lines.append(
                f"{self.num_titles_repaired} of {self.num_items} items had an HTML-fragment or missing title; "
                f"rebuilt from {how}{left}"
            )
        if self.num_prices_unparsable:
            lines.append(
                f"{self.num_prices_unparsable} prices could not be parsed and were left empty "
                f"(e.g. {', '.join(self.unparsable_prices)})"
            )
        return lines


def load_amazon(reviews, meta=None, missing_meta: str = "keep") -> tuple[Dataset, AmazonReport]:
    """Load Amazon 2018 reviews (or ratings CSV) and product metadata into a `Dataset`.

    `missing_meta` says what happens to reviewed items absent from the metadata: "keep" them with
    the title "item <asin>" (default; keeps 5-core counts and user histories intact) or "drop"
    them with their reviews.
    """
    if missing_meta not in MISSING_META_POLICIES:
        raise ConfigError(f"missing_meta={missing_meta!r}; choose one of {', '.join(MISSING_META_POLICIES)}")
    reviews = Path(reviews)
    meta = Path(meta) if meta is not None else None
    report = AmazonReport(str(reviews), str(meta) if meta else None, missing_meta=missing_meta)
    interactions = _read_reviews(reviews, report)
    records = _read_meta(meta, report) if meta else {}
    interactions = _apply_missing_meta(interactions, records, report)
    item_ids = list(dict.fromkeys(x.item_id for x in interactions))
    items = {asin: _item(asin, records.get(asin), report) for asin in item_ids}
    items = _link_items(items, records, report)
    users = {uid: User(uid) for uid in dict.fromkeys(x.user_id for x in interactions)}
    report.num_reviews, report.num_users, report.num_items = len(interactions), len(users), len(items)
    sources = (reviews, meta) if meta else (reviews,)
    return Dataset(f"amazon-{_stem(reviews)}", users, items, interactions, sources), report


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _read_reviews(path: Path, report: AmazonReport) -> list[Interaction]:
    fmt = _reviews_format(path)
    report.reviews_format = fmt
    if fmt == "json":
        hint = f"expected Amazon 2018 review JSON lines with keys {', '.join(REVIEW_KEYS)}"
    else:
        hint = f"expected a ratings CSV without header: {','.join(CSV_COLUMNS)}"
    errors = LineErrors(path, hint)
    rows = []  # (interaction, line number)
    for line_no, text in text_lines(path, errors):
        interaction = _json_review(line_no, text, errors) if fmt == "json" else _csv_rating(line_no, text, errors)
        if interaction is not None:
            errors.records += 1
            rows.append((interaction, line_no))
    errors.check()
    report.num_review_lines = errors.lines
    report.num_bad_review_lines, report.bad_review_lines = errors.count, errors.examples
    return _latest_per_pair(rows, report)


def _reviews_format(path: Path) -> str:
    for _, raw in raw_lines(path):
        if raw.strip():
            return "json" if raw.lstrip().startswith(b"{") else "csv"
    raise DataError(f"{path}: the file is empty; pass a reviews JSON-lines or ratings CSV file")


def _json_review(line_no: int, text: str, errors: LineErrors) -> Interaction | None:
    record = json_object(line_no, text, errors)
    if record is None:
        return None
    missing = [key for key in REVIEW_KEYS if key not in record]
    if missing:
        errors.bad(line_no, f"missing key {missing[0]!r}")
        return None
    values = (record["reviewerID"], record["asin"], record["overall"], record["unixReviewTime"])
    return _interaction(line_no, *values, errors)


def _csv_rating(line_no: int, text: str, errors: LineErrors) -> Interaction | None:
    fields = next(csv.reader([text]))
    if len(fields) != len(CSV_COLUMNS):
        errors.bad(line_no, f"expected {len(CSV_COLUMNS)} fields, found {len(fields)}")
        return None
    asin, user_id, rating, timestamp = fields
    return _interaction(line_no, user_id, asin, rating, timestamp, errors)


def _interaction(line_no: int, user_id, asin, rating, timestamp, errors: LineErrors) -> Interaction | None:
    for name, value in (("reviewerID", user_id), ("asin", asin)):
        if not isinstance(value, str) or not value.strip():
            errors.bad(line_no, f"{name} is {value!r}")
            return None
    try:
        stars = math.nan if isinstance(rating, bool) else float(rating)
        seconds = float(timestamp)
    except (TypeError, ValueError):
        errors.bad(line_no, f"rating {rating!r} or timestamp {timestamp!r} is not a number")
        return None
    if not (math.isfinite(stars) and 1 <= stars <= 5):
        errors.bad(line_no, f"rating {rating!r} is not a number from 1 to 5 stars")
        return None
    if not seconds.is_integer():
        errors.bad(line_no, f"timestamp {timestamp!r} is not whole unix seconds")
        return None
    return Interaction(user_id.strip(), asin.strip(), stars, None, int(seconds))


def _latest_per_pair(rows: list[tuple[Interaction, int]], report: AmazonReport) -> list[Interaction]:
    """One interaction per (user, item): the latest (ties: the later line), in file order."""
    winner: dict[tuple[str, str], tuple[int, int]] = {}
    for x, line_no in rows:
        key = (x.user_id, x.item_id)
        winner[key] = max(winner.get(key, (x.timestamp, line_no)), (x.timestamp, line_no))
    report.num_repeated_pairs = len(rows) - len(winner)
    report.num_duplicate_rows = len(rows) - len({x for x, _ in rows})
    return [x for x, line_no in rows if winner[(x.user_id, x.item_id)][1] == line_no]


def _read_meta(path: Path, report: AmazonReport) -> dict[str, dict]:
    """The first record of each ASIN; duplicates are counted, and whether they differ."""
    errors = LineErrors(path, "expected Amazon 2018 product metadata JSON lines with an 'asin' key")
    records: dict[str, dict] = {}
    for line_no, text in text_lines(path, errors):
        record = json_object(line_no, text, errors)
        if record is None:
            continue
        asin = record.get("asin")
        if not isinstance(asin, str) or not asin.strip():
            errors.bad(line_no, f"asin is {asin!r}" if "asin" in record else "missing key 'asin'")
            continue
        errors.records += 1
        first = records.setdefault(asin.strip(), record)
        if first is not record:
            report.num_meta_duplicates += 1
            report.num_meta_duplicates_differing += int(first != record)
    errors.check()
    report.num_meta_lines, report.num_meta_asins = errors.lines, len(records)
    report.num_bad_meta_lines, report.bad_meta_lines = errors.count, errors.examples
    return records


def _apply_missing_meta(interactions: list[Interaction], records: dict, report: AmazonReport) -> list[Interaction]:
    missing = {x.item_id for x in interactions if x.item_id not in records}
    report.num_items_without_meta = len(missing)
    if report.missing_meta == "keep" or not missing:
        return interactions
    kept = [x for x in interactions if x.item_id not in missing]
    report.num_reviews_without_meta_dropped = len(interactions) - len(kept)
    if not kept:
        raise DataError(
            f"{report.meta_path}: none of the reviewed items has metadata; check that the reviews and "
            "metadata files are of the same category"
        )
    return kept


def clean_text(value) -> str:
    """Plain text from an Amazon field: entities decoded, tags removed, whitespace collapsed."""
    if not isinstance(value, str):
        return ""
    return _SPACE.sub(" ", _TAG.sub(" ", html.unescape(value))).strip()


def _categories(value) -> list[str]:
    """The category path with empty and HTML entries dropped and repeated levels merged."""
    path = []
    for entry in value if isinstance(value, list) else []:
        text = clean_text(entry)
        if text and "<" not in str(entry) and (not path or path[-1] != text):
            path.append(text)
    return path


def _description(value) -> str | None:
    """The first non-empty description paragraph, cut at a word near DESCRIPTION_CHARS."""
    paragraphs = value if isinstance(value, list) else [value]
    for paragraph in paragraphs:
        text = clean_text(paragraph)
        if text:
            return _shorten(text, DESCRIPTION_CHARS)
    return None


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",.;: ") + "..."


def _price(value, report: AmazonReport) -> float | None:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        report.num_prices_missing += 1
        return None
    match = _PRICE.match(text)
    if match is None:
        report.num_prices_unparsable += 1
        example = repr(_shorten(" ".join(text.split()), 40))
        if len(report.unparsable_prices) < 3 and example not in report.unparsable_prices:
            report.unparsable_prices.append(example)
        return None
    report.num_price_ranges += int(match.group(2) is not None)
    return float(match.group(1).replace(",", ""))


def _title(asin: str, record: dict, brand: str | None, categories: list[str], description: str | None):
    """(title, source): the metadata title unless it is HTML or empty, then the fallbacks in order.

    The description's first words come before brand and category: they usually name the product
    ("Vogue is the fashion authority."), while "publisher (category)" is shared by many products.
    """
    title = clean_text(record.get("title"))  # an HTML fragment such as '<span class="..."' cleans to ""
    if title:
        return _shorten(title, TITLE_CHARS), "title"
    if description:
        words = _SENTENCE_END.split(description, maxsplit=1)[0].split()
        more = "..." if len(words) > DESCRIPTION_TITLE_WORDS else ""
        return " ".join(words[:DESCRIPTION_TITLE_WORDS]).rstrip(",;:") + more, "description"
    leaf = categories[-1] if categories else None
    if brand or leaf:
        return f"{brand} ({leaf})" if brand and leaf else (brand or leaf), "brand+category"
    return f"item {asin}", "asin"


def _item(asin: str, record: dict | None, report: AmazonReport) -> Item:
    if record is None:
        report.title_sources["no metadata"] = report.title_sources.get("no metadata", 0) + 1
        empty = {"brand": None, "categories": [], "price": None, "description": None}
        return Item(asin, f"item {asin}", empty | {"also_buy": [], "also_view": []})
    brand = clean_text(record.get("brand")) or None
    categories = _categories(record.get("category"))
    description = _description(record.get("description"))
    title, source = _title(asin, record, brand, categories, description)
    report.title_sources[source] = report.title_sources.get(source, 0) + 1
    attributes = {
        "brand": brand,
        "categories": categories,
        "price": _price(record.get("price"), report),
        "description": description,
    }
    return Item(asin, title, attributes)


def _link_items(items: dict[str, Item], records: dict, report: AmazonReport) -> dict[str, Item]:
    """Add also_buy / also_view, keeping only links to other reviewed items (they have titles)."""
    linked = {}
    for asin, item in items.items():
        links = {}
        for key in ("also_buy", "also_view"):
            raw = (records.get(asin) or {}).get(key)
            targets = [a for a in raw if isinstance(a, str)] if isinstance(raw, list) else []
            kept = [a for a in dict.fromkeys(targets) if a in items and a != asin]
            report.num_links_kept += len(kept)
            report.num_links_outside += len([a for a in dict.fromkeys(targets) if a not in items])
            links[key] = kept
        linked[asin] = Item(asin, item.title, item.attributes | links)
    return linked
