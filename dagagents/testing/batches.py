"""The fake server's Message Batches API: create, retrieve, list, results (JSONL), cancel, delete.

Shapes follow the SDK's types (`MessageBatch`, `MessageBatchIndividualResponse`) and the API's
documented rules: at most 100,000 requests or 256 MB per batch; `custom_id` unique within a
batch and matching `^[a-zA-Z0-9_-]{1,64}$`; request counts stay at `processing` until the whole
batch ends; results (any order) only once `processing_status` is `ended`; a batch expires 24 hours
after creation. Processing takes `delay` seconds (settable per test), after which every request
is answered by the same machinery as a direct call (scripted replies, prompt cache, usage). The
requests of one batch are processed as if side by side: none reads a cache entry another one
of the same batch writes (the API promises cache hits within a batch only on a best-effort
basis), while entries written before the batch are read.
`fail("errored" | "expired", ...)` makes chosen requests come back errored or expired.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from dagagents.testing.server import FakeAnthropic, RecordedRequest

Json = dict[str, Any]
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class BatchOutcome:
    """An injected per-request outcome: `kind` "errored" (with an error body) or "expired"."""

    kind: str
    match: Callable[[str, Json], bool]
    times: int | None = 1
    error_type: str = "api_error"
    message: str = "Internal server error"
    used: int = 0


@dataclass
class FakeBatch:
    """One batch as the server holds it; `requests` keeps the custom_ids and params in order."""

    id: str
    requests: list[Json]
    created: datetime
    processing_status: str = "in_progress"
    ended: datetime | None = None
    cancel_initiated: datetime | None = None
    results: list[Json] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def custom_ids(self) -> list[str]:
        return [r["custom_id"] for r in self.requests]

    def counts(self) -> Json:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if self.processing_status != "ended":
            counts["processing"] = len(self.requests)
            return counts
        for result in self.results:
            counts[result["result"]["type"]] += 1
        return counts

    def as_json(self, base_url: str) -> Json:
        ended = self.processing_status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": self.counts(),
            "created_at": _stamp(self.created),
            "expires_at": _stamp(self.created + timedelta(hours=24)),
            "ended_at": _stamp(self.ended) if self.ended else None,
            "cancel_initiated_at": _stamp(self.cancel_initiated) if self.cancel_initiated else None,
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }


class BatchQueue:
    """Batches of one `FakeAnthropic`; `serve` answers the `/v1/messages/batches` routes."""

    def __init__(self, server: FakeAnthropic, delay: float = 0.0) -> None:
        self.server = server
        self.delay = delay
        self.max_requests = MAX_REQUESTS
        self.max_bytes = MAX_BYTES
        self.batches: dict[str, FakeBatch] = {}
        self.outcomes: list[BatchOutcome] = []
        # Batches still processing (a test may delete a batch from `batches` meanwhile).
        self.processing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ configuration / inspection
    def fail(
        self,
        kind: str = "errored",
        *,
        times: int | None = 1,
        custom_id: str | None = None,
        pattern: str | None = None,
        error_type: str = "api_error",
        message: str = "Internal server error",
    ) -> BatchOutcome:
        """Make the next `times` matching requests come back `errored` or `expired`.

        `custom_id` is a regex over the request's custom_id, `pattern` one over its last user
        message (as in `FakeAnthropic.reply`)."""
        if kind not in ("errored", "expired"):
            raise ValueError(f"batch outcome must be 'errored' or 'expired', not {kind!r}")
        from dagagents.testing.server import last_user_text

        cid = re.compile(custom_id) if custom_id else None
        pat = re.compile(pattern) if pattern else None

        def match(request_id: str, params: Json) -> bool:
            if cid is not None and not cid.search(request_id):
                return False
            return pat is None or bool(pat.search(last_user_text(params)))

        outcome = BatchOutcome(kind, match, times, error_type, message)
        self.outcomes.append(outcome)
        return outcome

    def requests_for(self, custom_id: str) -> list[str]:
        """Ids of every batch that carried `custom_id` (to prove nothing was submitted twice)."""
        return [b.id for b in self.batches.values() if custom_id in b.custom_ids]

    @property
    def submitted(self) -> list[FakeBatch]:
        return list(self.batches.values())

    # ------------------------------------------------------------ HTTP
    async def serve(self, record: RecordedRequest, path: str, writer: asyncio.StreamWriter) -> bool:
        srv = self.server
        parts = path.rstrip("/").split("/")[4:]  # after /v1/messages/batches
        method = record.method
        if not parts:
            if method == "POST":
                return await self._create(record, writer)
            if method == "GET":
                return await srv._send_json(writer, record, 200, self._list(record.path))
        batch = self.batches.get(parts[0]) if parts else None
        if batch is None:
            return await srv._error(
                writer, record, 404, "not_found_error", f"Not found: {record.path}"
            )
        if len(parts) == 1 and method == "GET":
            return await srv._send_json(writer, record, 200, batch.as_json(srv.url))
        if len(parts) == 1 and method == "DELETE":
            if batch.processing_status != "ended":
                return await srv._error(
                    writer,
                    record,
                    400,
                    "invalid_request_error",
                    f"Batch {batch.id} cannot be deleted while it is still processing; "
                    "cancel it first.",
                )
            del self.batches[batch.id]
            return await srv._send_json(
                writer, record, 200, {"id": batch.id, "type": "message_batch_deleted"}
            )
        if parts[1:] == ["cancel"] and method == "POST":
            if batch.processing_status == "in_progress":
                batch.processing_status = "canceling"
                batch.cancel_initiated = datetime.now(UTC)
                if batch.task is not None:
                    batch.task.cancel()
                self._finish(batch, canceled=True)
            return await srv._send_json(writer, record, 200, batch.as_json(srv.url))
        if parts[1:] == ["results"] and method == "GET":
            if batch.processing_status != "ended":
                return await srv._error(
                    writer,
                    record,
                    404,
                    "not_found_error",
                    f"Batch {batch.id} has not finished processing; its results are not ready.",
                )
            data = b"".join(orjson.dumps(r) + b"\n" for r in batch.results)
            return await self._send_raw(record, writer, data)
        return await srv._error(writer, record, 404, "not_found_error", f"Not found: {record.path}")

    async def _send_raw(
        self, record: RecordedRequest, writer: asyncio.StreamWriter, data: bytes
    ) -> bool:
        from dagagents.testing.server import _head, _new_id

        head = {
            "content-type": "application/binary",
            "content-length": str(len(data)),
            "request-id": _new_id("req"),
        }
        writer.write(_head(200, head) + data)
        await writer.drain()
        record.status, record.outcome = 200, "ok"
        return True

    def _list(self, raw_path: str) -> Json:
        query = dict(p.split("=", 1) for p in raw_path.partition("?")[2].split("&") if "=" in p)
        limit = int(query.get("limit", 20))
        items = sorted(self.batches.values(), key=lambda b: b.created, reverse=True)
        if "after_id" in query:
            ids = [b.id for b in items]
            start = ids.index(query["after_id"]) + 1 if query["after_id"] in ids else 0
            items = items[start:]
        page = items[:limit]
        data = [b.as_json(self.server.url) for b in page]
        return {
            "data": data,
            "has_more": len(items) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    async def _create(self, record: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        from dagagents.testing.server import _new_id

        srv = self.server
        body = record.body
        raw_size = len(orjson.dumps(body)) if body is not None else 0
        if raw_size > self.max_bytes:
            return await srv._error(
                writer,
                record,
                413,
                "request_too_large",
                f"Request exceeds the maximum allowed number of bytes ({self.max_bytes}).",
            )
        requests = body.get("requests") if isinstance(body, dict) else None
        problem = None
        if not isinstance(requests, list) or not requests:
            problem = "requests: at least one request is required"
        elif len(requests) > self.max_requests:
            problem = (
                f"requests: a batch may hold at most {self.max_requests} requests "
                f"(got {len(requests)})"
            )
        else:
            seen: set[str] = set()
            for i, item in enumerate(requests):
                cid = item.get("custom_id") if isinstance(item, dict) else None
                if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                    problem = f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                    break
                if cid in seen:
                    problem = f"requests.{i}.custom_id: duplicate custom_id '{cid}' in batch"
                    break
                seen.add(cid)
                if not isinstance(item.get("params"), dict):
                    problem = f"requests.{i}.params: Field required"
                    break
        if problem is not None:
            return await srv._error(writer, record, 400, "invalid_request_error", problem)
        assert isinstance(requests, list)
        batch = FakeBatch(_new_id("msgbatch"), requests, datetime.now(UTC))
        self.batches[batch.id] = batch
        batch.task = asyncio.get_running_loop().create_task(self._process(batch))
        self.processing.add(batch.task)
        batch.task.add_done_callback(self.processing.discard)
        return await srv._send_json(writer, record, 200, batch.as_json(srv.url))

    # ------------------------------------------------------------ processing
    async def _process(self, batch: FakeBatch) -> None:
        await asyncio.sleep(self.delay)
        self._finish(batch, canceled=False)

    def _finish(self, batch: FakeBatch, canceled: bool) -> None:
        """End the batch: answer every request (or mark it canceled), in one pass."""
        if batch.processing_status == "ended":
            return
        from dagagents.testing.server import _validate

        srv = self.server
        results = []
        begun = []  # requests of one batch run side by side: none reads another's cache write
        for item in batch.requests:
            cid, params = item["custom_id"], item["params"]
            result: Json
            outcome = None if canceled else self._take(cid, params)
            if canceled:
                result = {"type": "canceled"}
            elif outcome is not None and outcome.kind == "expired":
                result = {"type": "expired"}
            elif outcome is not None:
                result = _errored(outcome.error_type, outcome.message)
            elif params.get("stream"):
                result = _errored("invalid_request_error", "stream: not supported in batches")
            elif problem := _validate(params):
                result = _errored("invalid_request_error", problem)
            else:
                message, decision, _latency = srv.make_message(params)
                begun.append(decision)
                srv.usage_log[-1]["batch_id"] = batch.id
                srv.usage_log[-1]["custom_id"] = cid
                result = {"type": "succeeded", "message": message}
            results.append({"custom_id": cid, "result": result})
        for decision in begun:
            srv.cache.begun(decision)
        results.reverse()  # the API promises no order: make sure callers match by custom_id
        batch.results = results
        batch.processing_status = "ended"
        batch.ended = datetime.now(UTC)

    def _take(self, cid: str, params: Json) -> BatchOutcome | None:
        for outcome in self.outcomes:
            if outcome.times is not None and outcome.used >= outcome.times:
                continue
            if outcome.match(cid, params):
                outcome.used += 1
                return outcome
        return None


def _errored(error_type: str, message: str) -> Json:
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": error_type, "message": message}},
    }
