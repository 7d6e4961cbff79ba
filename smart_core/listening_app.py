"""The rating page: a local web app on the standard library (http.server + sqlite3).

Why no framework: the app has six routes and must run wherever the study runs, with nothing to
install; sqlite3 gives transactions and one-row-per-rating guarantees. Each rating is committed
when submitted, so a refresh, a closed tab, a server restart or two participants at once lose
nothing, and a returning participant continues where they stopped.

The browser only ever sees anonymous stimulus ids: no system names in URLs, file names, HTML or
JSON; `private/` is never served, and audio paths are checked against the study's stimulus list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import sqlite3
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .listening import read_study_config

PARTICIPANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STIMULUS_RE = re.compile(r"^s[0-9a-f]{8}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (id TEXT PRIMARY KEY, started_at TEXT NOT NULL, order_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plays (participant TEXT NOT NULL, stimulus TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (participant, stimulus));
CREATE TABLE IF NOT EXISTS ratings (participant TEXT NOT NULL, stimulus TEXT NOT NULL, rating INTEGER NOT NULL,
    comment TEXT, position INTEGER NOT NULL, presented_at TEXT, rated_at TEXT NOT NULL,
    PRIMARY KEY (participant, stimulus));
"""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def participant_order(stimuli: list[str], participant: str, seed: int) -> list[str]:
    """Order of presentation, randomised per participant and reproducible from the id."""
    digest = int(hashlib.sha256(f"{seed}:{participant}".encode()).hexdigest()[:16], 16)
    order = list(stimuli)
    random.Random(digest).shuffle(order)
    return order


class Study:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        self.config = read_study_config(self.folder)
        self.stimuli = set(self.config.stimuli)
        (self.folder / "private").mkdir(exist_ok=True)
        self.db_path = self.folder / "private" / "ratings.sqlite"
        self._lock = threading.Lock()
        with self._connect() as con:
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    # --- API ------------------------------------------------------------------------------------
    def start(self, participant: str) -> dict:
        with self._lock, self._connect() as con:
            row = con.execute("SELECT order_json FROM participants WHERE id = ?", (participant,)).fetchone()
            if row is None:
                order = participant_order(self.config.stimuli, participant, self.config.seed)
                con.execute("INSERT INTO participants VALUES (?, ?, ?)", (participant, now(), json.dumps(order)))
            else:
                order = json.loads(row[0])
        return self.state(participant, order)

    def state(self, participant: str, order: list[str] | None = None) -> dict:
        with self._connect() as con:
            if order is None:
                row = con.execute("SELECT order_json FROM participants WHERE id = ?", (participant,)).fetchone()
                if row is None:
                    raise ApiError(HTTPStatus.NOT_FOUND, "unknown participant; start first")
                order = json.loads(row[0])
            done = {r[0] for r in con.execute("SELECT stimulus FROM ratings WHERE participant = ?", (participant,))}
        remaining = [s for s in order if s not in done]
        return {"participant": participant, "total": len(order), "done": len(order) - len(remaining),
                "next": remaining[0] if remaining else None}

    def _check(self, participant: str, stimulus: str) -> None:
        if not PARTICIPANT_RE.match(participant or ""):
            raise ApiError(HTTPStatus.BAD_REQUEST, "participant id: 1-64 letters, digits, '-' or '_'")
        if stimulus not in self.stimuli:
            raise ApiError(HTTPStatus.BAD_REQUEST, "unknown stimulus")
        self.state(participant)  # raises for unknown participants

    def played(self, participant: str, stimulus: str) -> dict:
        self._check(participant, stimulus)
        with self._lock, self._connect() as con:
            con.execute("INSERT INTO plays VALUES (?, ?, 1) ON CONFLICT(participant, stimulus) DO UPDATE SET count = count + 1",
                        (participant, stimulus))
        return {"ok": True}

    def rate(self, participant: str, stimulus: str, rating, comment: str = "", presented_at: str | None = None) -> dict:
        self._check(participant, stimulus)
        cfg = self.config
        if not isinstance(rating, int) or isinstance(rating, bool) or not cfg.scale_min <= rating <= cfg.scale_max:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"rating must be a whole number from {cfg.scale_min} to {cfg.scale_max}")
        if not isinstance(comment, str) or len(comment) > 2000:
            raise ApiError(HTTPStatus.BAD_REQUEST, "comment must be text of at most 2000 characters")
        with self._lock, self._connect() as con:
            plays = con.execute("SELECT count FROM plays WHERE participant = ? AND stimulus = ?", (participant, stimulus)).fetchone()
            if not plays:
                raise ApiError(HTTPStatus.CONFLICT, "play the excerpt before rating it")
            order = json.loads(con.execute("SELECT order_json FROM participants WHERE id = ?", (participant,)).fetchone()[0])
            cur = con.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                              (participant, stimulus, rating, comment, order.index(stimulus), presented_at, now()))
            if cur.rowcount == 0:
                raise ApiError(HTTPStatus.CONFLICT, "this excerpt is already rated")
        return self.state(participant)

    def audio_path(self, stimulus: str) -> Path:
        if stimulus == "practice" and self.config.practice:
            path = self.folder / "practice.wav"
        elif STIMULUS_RE.match(stimulus) and stimulus in self.stimuli:
            path = self.folder / "stimuli" / f"{stimulus}.wav"
        else:
            raise ApiError(HTTPStatus.NOT_FOUND, "no such audio")
        path = path.resolve()
        if self.folder not in path.parents or "private" in path.parts or not path.is_file():
            raise ApiError(HTTPStatus.NOT_FOUND, "no such audio")
        return path


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def make_handler(study: Study):
    page = (Path(__file__).parent / "listening_page.html").read_text()
    public = {"title": study.config.title, "question": study.config.question, "scale_min": study.config.scale_min,
              "scale_max": study.config.scale_max, "scale_labels": list(study.config.scale_labels),
              "practice": study.config.practice}

    class Handler(BaseHTTPRequestHandler):
        server_version = "SMARTListen/1"

        def log_message(self, fmt, *args):  # quiet by default
            pass

        def _send(self, status, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _guard(self, fn):
            try:
                fn()
            except ApiError as err:
                self._json(err.status, {"error": err.message})
            except (ValueError, KeyError, TypeError) as err:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"malformed request: {err}"})

        def do_GET(self):
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, page.replace("__PUBLIC_CONFIG__", json.dumps(public)).encode(),
                                  "text/html; charset=utf-8")
            if url.path.startswith("/audio/") and url.path.endswith(".wav"):
                def serve():
                    path = study.audio_path(url.path[len("/audio/"):-len(".wav")])
                    self._send(HTTPStatus.OK, path.read_bytes(), "audio/wav")
                return self._guard(serve)
            if url.path == "/api/state":
                q = parse_qs(url.query)
                return self._guard(lambda: self._json(HTTPStatus.OK, study.state(q["participant"][0])))
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self):
            url = urlparse(self.path)

            def handle():
                length = int(self.headers.get("Content-Length", "0"))
                if length > 10_000:
                    raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ApiError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
                participant = body.get("participant", "")
                if url.path == "/api/start":
                    if not PARTICIPANT_RE.match(str(participant)):
                        raise ApiError(HTTPStatus.BAD_REQUEST, "participant id: 1-64 letters, digits, '-' or '_'")
                    return self._json(HTTPStatus.OK, study.start(participant))
                if url.path == "/api/played":
                    return self._json(HTTPStatus.OK, study.played(participant, body.get("stimulus", "")))
                if url.path == "/api/rate":
                    return self._json(HTTPStatus.OK, study.rate(participant, body.get("stimulus", ""), body.get("rating"),
                                                                body.get("comment", ""), body.get("presented_at")))
                raise ApiError(HTTPStatus.NOT_FOUND, "not found")

            self._guard(handle)

    return Handler


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server (not yet started: call serve_forever) for the study folder."""
    study = Study(study_dir)
    server = ThreadingHTTPServer((host, port), make_handler(study))
    server.daemon_threads = True
    return server
