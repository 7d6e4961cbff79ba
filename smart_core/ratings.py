"""The ratings database, defined once: schema, connection, migration and the CSV export.

The rating server (listening_app.py) writes it and the export reads it; keeping both on this one
module means the two can never disagree about a table or a column.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from .errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, started_at TEXT NOT NULL, order_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plays (participant TEXT NOT NULL, stimulus TEXT NOT NULL, count INTEGER NOT NULL,
    first_played_at TEXT, PRIMARY KEY (participant, stimulus));
CREATE TABLE IF NOT EXISTS ratings (participant TEXT NOT NULL, stimulus TEXT NOT NULL, rating INTEGER NOT NULL,
    comment TEXT, position INTEGER NOT NULL, presented_at TEXT, rated_at TEXT NOT NULL,
    PRIMARY KEY (participant, stimulus));
"""
# columns added after the first studies ran: (table, column, type); added in place to older databases
LATER_COLUMNS = [("plays", "first_played_at", "TEXT")]

EXPORT_COLUMNS = ["participant", "stimulus", "system", "prompt", "rating", "comment", "position", "presented_at",
                  "rated_at", "play_count"]
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"); the
# full-width forms are included because some spreadsheet locales read them as the ASCII ones.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


class NotAStudy(UserError, FileNotFoundError):
    """A folder given as a listening study that lacks what a study needs (the message says what)."""


def db_path(study_dir: str | Path) -> Path:
    return Path(study_dir) / "private" / "ratings.sqlite"


@contextmanager
def connect(path: str | Path) -> Iterator[sqlite3.Connection]:
    """An autocommit connection (each statement commits) that is closed on leaving the block."""
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # readers (the export) never block the server
        yield con
    finally:
        con.close()


def ensure_schema(con: sqlite3.Connection) -> None:
    """Create missing tables and add columns that older databases lack."""
    con.executescript(SCHEMA)
    for table, column, kind in LATER_COLUMNS:
        present = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def require_study(study: Path) -> None:
    """One clear line when the folder is not a listening study (a typo in --study, say)."""
    for needed, what in (("study.json", "the study description"), ("private/key.csv", "the id -> system key")):
        if not (study / needed).is_file():
            raise NotAStudy(f"{study} is not a listening study: {needed} ({what}) is missing")


def export_ratings(study_dir: str | Path, out_csv: str | Path | None = None) -> pd.DataFrame:
    """One row per rating joined with the private key: participant, stimulus, system, prompt,
    rating, comment, position, presented/rated timestamps, play count.

    The returned table holds the values as rated; the CSV written to out_csv (header only when
    nobody has rated yet) is made safe to open in a spreadsheet."""
    study = Path(study_dir)
    require_study(study)
    ratings = read_ratings(db_path(study))
    key = pd.read_csv(study / "private" / "key.csv")
    table = ratings.merge(key[["stimulus", "system", "prompt"]], on="stimulus", how="left")[EXPORT_COLUMNS]
    if out_csv:
        write_spreadsheet_safe_csv(table, out_csv)
    return table


def read_ratings(path: Path) -> pd.DataFrame:
    empty = pd.DataFrame(columns=["participant", "stimulus", "rating", "comment", "position", "presented_at",
                                  "rated_at", "play_count"])
    if not path.exists():  # nobody has started yet: do not create a database just to read it
        return empty
    with connect(path) as con:
        return pd.read_sql_query(
            "SELECT r.participant, r.stimulus, r.rating, r.comment, r.position, r.presented_at, r.rated_at, "
            "COALESCE(p.count, 0) AS play_count FROM ratings r LEFT JOIN plays p "
            "ON p.participant = r.participant AND p.stimulus = r.stimulus ORDER BY r.participant, r.position", con)


def neutralise_formula(value):
    """A text cell that a spreadsheet would run as a formula gets a leading single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_spreadsheet_safe_csv(table: pd.DataFrame, out_csv: str | Path) -> None:
    """CSV with every formula-like text cell neutralised (the table itself is left as it is).
    RFC 4180 line ends: with them the csv module also quotes a lone carriage return in a comment,
    which with '\n' line ends it leaves bare, splitting the row for every reader."""
    table.map(neutralise_formula).to_csv(out_csv, index=False, lineterminator="\r\n")


def ratings_state(path: str | Path) -> tuple:
    """(number of ratings, time of the last one) of a database, read-only; ("unreadable",) if it
    cannot be read. What `make clean-runs` and the pipeline's artifact digest look at."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return ("unreadable",)
    try:
        return tuple(con.execute("SELECT COUNT(*), MAX(rated_at) FROM ratings").fetchone())
    except sqlite3.DatabaseError:
        return ("unreadable",)
    finally:
        con.close()
