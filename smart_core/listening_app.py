"""The rating page: a local web app on the standard library (http.server + sqlite3).

Why no framework: the app has six routes and must run wherever the study runs, with nothing to
install; sqlite3 gives transactions and one-row-per-rating guarantees. Each rating is committed
when submitted, so a refresh, a closed tab, a server restart or two participants at once lose
nothing, and a returning participant continues where they stopped.

The browser only ever sees anonymous stimulus ids: no system names in URLs, file names, HTML or
JSON; `private/` is never served, and audio paths are checked against the study's stimulus list.

The server also enforces what the page asks of a participant, since a request can be made by hand:
every field is checked by type and range, excerpts are rated in the order presented, and only once
the excerpt has had time to play to the end. POSTs must be same-origin JSON (no cross-site forms).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import re
import threading
import wave
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

import pandas as pd

from .stimuli import filter_failure_lines, read_study_config
from .ratings import NotAStudy, connect, db_path, ensure_schema

log = logging.getLogger(__name__)

# fullmatch only: with match + '$', "cz\n" passed ('$' also matches before a trailing newline)
PARTICIPANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
STIMULUS_RE = re.compile(r"s[0-9a-f]{8}")
CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would also take '-1', ' 1_0' or '١'
MAX_BODY_BYTES = 10_000
MAX_COMMENT_CHARS = 2000
MAX_TIMESTAMP_CHARS = 64
# a rating may come this much earlier than the clip's length after its first play started: the
# page reports the play when playback is requested, a little before the audio actually starts
PLAY_TOLERANCE_S = 0.25
# seconds any one read or write on a connection may wait: a body that never arrives frees its thread
REQUEST_TIMEOUT_S = 5.0
WRITE_CHUNK_BYTES = 64 * 1024
PARTICIPANT_RULE = "participant id: 1-64 letters, digits, '-' or '_'"
NOT_CURRENT = "this is not your current excerpt"  # the page reloads its state on seeing this


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def participant_order(stimuli: list[str], participant: str, seed: int) -> list[str]:
    """Order of presentation, randomised per participant and reproducible from the id."""
    digest = int(hashlib.sha256(f"{seed}:{participant}".encode()).hexdigest()[:16], 16)
    order = list(stimuli)
    random.Random(digest).shuffle(order)
    return order


# --- field checks: each raises ApiError(400) with one line saying what is expected ----------------
def require_participant(value) -> str:
    if not isinstance(value, str) or not PARTICIPANT_RE.fullmatch(value):
        raise ApiError(HTTPStatus.BAD_REQUEST, PARTICIPANT_RULE)
    return value


def require_presented_at(value) -> str | None:
    """An ISO-8601 timestamp string (as the page's Date.toISOString writes it) or absent."""
    if value is None:
        return None
    message = "presented_at must be an ISO-8601 timestamp, e.g. 2024-05-01T12:00:00.000Z"
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_CHARS:
        raise ApiError(HTTPStatus.BAD_REQUEST, message)
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(HTTPStatus.BAD_REQUEST, message) from None
    return value


def wav_seconds(path: Path) -> float:
    """Length of a PCM WAV clip, from its header."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / w.getframerate()
    except (OSError, EOFError, wave.Error) as err:
        raise NotAStudy(f"stimulus audio {path} is missing or not a PCM WAV file ({err})") from None


def warn_about_filter_failures(folder: Path) -> None:
    """One warning line when some stimuli were kept without passing the paper's filters."""
    key_path = folder / "private" / "key.csv"
    if key_path.is_file():
        for line in filter_failure_lines(pd.read_csv(key_path)):
            log.warning(line)


class Study:
    def __init__(self, folder: str | Path, clock: Callable[[], dt.datetime] = utc_now):
        self.folder = Path(folder).resolve()
        if not (self.folder / "study.json").is_file():
            raise NotAStudy(f"{self.folder} is not a listening study: study.json is missing")
        self.config = read_study_config(self.folder)
        self.stimuli = set(self.config.stimuli)
        self.clock = clock  # replaceable so tests can let time pass without waiting
        # read once at start: the server refuses ratings that come before a clip could have ended
        self.durations = {s: wav_seconds(self.folder / "stimuli" / f"{s}.wav") for s in self.config.stimuli}
        (self.folder / "private").mkdir(exist_ok=True)
        self.db_path = db_path(self.folder)
        self._lock = threading.Lock()
        with connect(self.db_path) as con:
            ensure_schema(con)
        warn_about_filter_failures(self.folder)

    def _now(self) -> str:
        return self.clock().isoformat(timespec="milliseconds")

    # --- API ------------------------------------------------------------------------------------
    def start(self, participant: str) -> dict:
        require_participant(participant)
        with self._lock, connect(self.db_path) as con:
            row = con.execute("SELECT order_json FROM participants WHERE id = ?", (participant,)).fetchone()
            if row is None:
                order = participant_order(self.config.stimuli, participant, self.config.seed)
                con.execute("INSERT INTO participants VALUES (?, ?, ?)", (participant, self._now(), json.dumps(order)))
            else:
                order = json.loads(row[0])
        return self.state(participant, order)

    def state(self, participant: str, order: list[str] | None = None) -> dict:
        require_participant(participant)
        with connect(self.db_path) as con:
            if order is None:
                order = self._order(con, participant)
            done = self._rated(con, participant)
        remaining = [s for s in order if s not in done]
        return {"participant": participant, "total": len(order), "done": len(order) - len(remaining),
                "next": remaining[0] if remaining else None}

    @staticmethod
    def _order(con, participant: str) -> list[str]:
        row = con.execute("SELECT order_json FROM participants WHERE id = ?", (participant,)).fetchone()
        if row is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "unknown participant; start first")
        return json.loads(row[0])

    @staticmethod
    def _rated(con, participant: str) -> set[str]:
        return {r[0] for r in con.execute("SELECT stimulus FROM ratings WHERE participant = ?", (participant,))}

    def _current(self, con, participant: str) -> str | None:
        """The stimulus this participant is to hear and rate now (None when all are rated)."""
        done = self._rated(con, participant)
        return next((s for s in self._order(con, participant) if s not in done), None)

    def _check(self, participant, stimulus) -> None:
        require_participant(participant)
        if not isinstance(stimulus, str) or stimulus not in self.stimuli:
            raise ApiError(HTTPStatus.BAD_REQUEST, "unknown stimulus")
        self.state(participant)  # raises for unknown participants

    def played(self, participant: str, stimulus: str) -> dict:
        """Count a play; the first one's start time is what the 'played to the end' check uses."""
        self._check(participant, stimulus)
        with self._lock, connect(self.db_path) as con:
            if stimulus != self._current(con, participant):  # no playing ahead to rate quickly later
                raise ApiError(HTTPStatus.CONFLICT, NOT_CURRENT)
            con.execute("INSERT INTO plays (participant, stimulus, count, first_played_at) VALUES (?, ?, 1, ?) "
                        "ON CONFLICT(participant, stimulus) DO UPDATE SET count = count + 1, "
                        "first_played_at = COALESCE(first_played_at, excluded.first_played_at)",
                        (participant, stimulus, self._now()))
        return {"ok": True}

    def rate(self, participant: str, stimulus: str, rating, comment: str = "", presented_at: str | None = None) -> dict:
        self._check(participant, stimulus)
        cfg = self.config
        if not isinstance(rating, int) or isinstance(rating, bool) or not cfg.scale_min <= rating <= cfg.scale_max:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"rating must be a whole number from {cfg.scale_min} to {cfg.scale_max}")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"comment must be text of at most {MAX_COMMENT_CHARS} characters")
        require_presented_at(presented_at)
        with self._lock, connect(self.db_path) as con:
            if stimulus in self._rated(con, participant):
                raise ApiError(HTTPStatus.CONFLICT, "this excerpt is already rated")
            if stimulus != self._current(con, participant):
                raise ApiError(HTTPStatus.CONFLICT, f"rate the excerpts in the order given: {NOT_CURRENT}")
            self._require_played_to_end(con, participant, stimulus)
            position = self._order(con, participant).index(stimulus)
            cur = con.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                              (participant, stimulus, rating, comment, position, presented_at, self._now()))
            if cur.rowcount == 0:  # a second server process on the same database got there first
                raise ApiError(HTTPStatus.CONFLICT, "this excerpt is already rated")
        return self.state(participant)

    def _require_played_to_end(self, con, participant: str, stimulus: str) -> None:
        row = con.execute("SELECT first_played_at FROM plays WHERE participant = ? AND stimulus = ?",
                          (participant, stimulus)).fetchone()
        if row is None:
            raise ApiError(HTTPStatus.CONFLICT, "play the excerpt before rating it")
        seconds = self.durations[stimulus]
        if row[0] is None:  # played before the server recorded start times (an older database)
            raise ApiError(HTTPStatus.CONFLICT, "play the excerpt to the end (once more) before rating it")
        listened = (self.clock() - dt.datetime.fromisoformat(row[0])).total_seconds()
        if listened < seconds - PLAY_TOLERANCE_S:
            message = f"play the excerpt to the end before rating it (it lasts {seconds:.1f} s)"
            raise ApiError(HTTPStatus.CONFLICT, message)

    def audio_path(self, stimulus: str) -> Path:
        if stimulus == "practice" and self.config.practice:
            path = self.folder / "practice.wav"
        elif STIMULUS_RE.fullmatch(stimulus) and stimulus in self.stimuli:
            path = self.folder / "stimuli" / f"{stimulus}.wav"
        else:
            raise ApiError(HTTPStatus.NOT_FOUND, "no such audio")
        path = path.resolve()
        # only the part inside the study counts: a study kept under some '.../private/...' folder still serves
        inside = path.relative_to(self.folder) if path.is_relative_to(self.folder) else None
        if inside is None or "private" in inside.parts or not path.is_file():
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
        timeout = REQUEST_TIMEOUT_S  # socket timeout per read/write (StreamRequestHandler.setup applies it)

        def log_message(self, fmt, *args):  # quiet by default
            pass

        def _send(self, status, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            # in pieces: the socket timeout bounds each sendall as a whole, and a 10 s clip (~2 MB)
            # must reach a slow connection without counting as a stalled one
            for start in range(0, len(body), WRITE_CHUNK_BYTES):
                self.wfile.write(body[start:start + WRITE_CHUNK_BYTES])

        def _json(self, status, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _guard(self, fn):
            """Every request gets an answer with a JSON error, or (client gone or stalled) is dropped."""
            try:
                self._refuse_foreign_origin()
                fn()
            except ApiError as err:
                self._json(err.status, {"error": err.message})
            except (TimeoutError, ConnectionError):
                self.close_connection = True  # nobody to answer: free the thread
            except (ValueError, KeyError, TypeError) as err:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"malformed request: {err}"})
            except Exception:
                log.exception("internal error on %s %s", self.command, self.path)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"})

        def _refuse_foreign_origin(self) -> None:
            """Browsers send Origin on cross-site requests: only the page's own host may call us."""
            origin = self.headers.get("Origin")
            if origin is None:
                return
            host = self.headers.get("Host", "")
            if not host or urlparse(origin).netloc.lower() != host.lower():
                raise ApiError(HTTPStatus.FORBIDDEN, "requests from other sites are refused")

        def _content_length(self) -> int:
            """The declared body size, refused before reading anything unless it is one small number."""
            lengths = self.headers.get_all("Content-Length") or []
            if "Transfer-Encoding" in self.headers or not lengths:
                raise ApiError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header (no chunked bodies)")
            if len(set(lengths)) > 1 or not CONTENT_LENGTH_RE.fullmatch(lengths[0].strip()):
                raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length must be one whole number of bytes")
            length = int(lengths[0])
            if length > MAX_BODY_BYTES:
                raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
            return length

        def _read_json_body(self) -> dict:
            # JSON only: a cross-site form can post text/plain without a CORS preflight
            if self.headers.get_content_type() != "application/json":
                raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the request as Content-Type: application/json")
            length = self._content_length()
            raw = self.rfile.read(length)  # bounded by the socket timeout if the body never comes
            if len(raw) < length:
                raise ApiError(HTTPStatus.BAD_REQUEST, "request body shorter than its Content-Length")
            try:
                body = json.loads(raw or b"{}")
            except RecursionError:
                raise ApiError(HTTPStatus.BAD_REQUEST, "JSON nested too deeply") from None
            if not isinstance(body, dict):
                raise ApiError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
            return body

        def do_GET(self):
            url = urlparse(self.path)

            def handle():
                if url.path in ("/", "/index.html"):
                    return self._send(HTTPStatus.OK, page.replace("__PUBLIC_CONFIG__", json.dumps(public)).encode(),
                                      "text/html; charset=utf-8")
                if url.path.startswith("/audio/") and url.path.endswith(".wav"):
                    path = study.audio_path(url.path[len("/audio/"):-len(".wav")])
                    return self._send(HTTPStatus.OK, path.read_bytes(), "audio/wav")
                if url.path == "/api/state":
                    participant = parse_qs(url.query).get("participant", [""])[0]
                    return self._json(HTTPStatus.OK, study.state(participant))
                raise ApiError(HTTPStatus.NOT_FOUND, "not found")

            self._guard(handle)

        def do_POST(self):
            url = urlparse(self.path)

            def handle():
                body = self._read_json_body()
                participant = body.get("participant", "")
                if url.path == "/api/start":
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
