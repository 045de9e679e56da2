"""A pipeline as code: split the input, encode the chunks in parallel, merge them.

Each step is a titus-flow batch job run from an ordinary Temporal workflow:

1. ``split`` writes the list of chunks to ``$TITUS_OUTPUT_PATH``;
2. one ``encode-<chunk>`` job per chunk, at most ``max_concurrent`` at once;
3. ``merge`` gets every encoded part and writes the combined result.

Run it (the worker loads this file next to the control-plane workflows)::

    titus-flow up --workflows examples/pipeline.py
    titus-flow start examples/pipeline.py:Pipeline --input '{"chunks": 4}' --wait

This file is a workflow module, not a job file: its jobs are built by functions,
so ``titus-flow validate examples/pipeline.py`` finds no jobs and the demo skips it.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field, JsonValue
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow import BatchJob, Container, Resources, Retry
    from titus_flow.flow import gather_jobs, outputs, run_job

IMAGE = "busybox:latest"
SMALL = Resources(cpu=0.1, memory="32Mi", disk=0)


class PipelineInput(BaseModel):
    """How much work to make, and how much of it to run at once."""

    chunks: int = Field(default=4, ge=1, le=100)
    max_concurrent: int = Field(default=2, ge=1)
    encode_seconds: float = Field(default=1.0, ge=0)


class PipelineResult(BaseModel):
    """What every step produced, and the ids of the jobs that did it."""

    chunks: list[str]
    encoded: list[JsonValue]
    merged: JsonValue
    job_ids: list[str]


def _sh(name: str, script: str, **env: str) -> BatchJob:
    return BatchJob(
        name=name,
        container=Container(image=IMAGE, command=["sh", "-c", script], env=env),
        resources=SMALL,
        retry=Retry(attempts=2),
        runtime_limit="5m",
    )


def split_job(chunks: int) -> BatchJob:
    """Writes ["chunk-1", ..., "chunk-N"] as its output."""
    return _sh(
        "split",
        'out=""; for i in $(seq 1 "$CHUNKS"); do out="$out${out:+,}\\"chunk-$i\\""; done;'
        ' echo "[$out]" > "$TITUS_OUTPUT_PATH"',
        CHUNKS=str(chunks),
    )


def encode_job(chunk: str, seconds: float) -> BatchJob:
    """Encodes one chunk (here: sleeps, then writes {"chunk": ..., "encoded": ...})."""
    return _sh(
        f"encode-{chunk}",
        'sleep "$ENCODE_SECONDS"; printf \'{"chunk": "%s", "encoded": "%s"}\' "$CHUNK"'
        ' "$(echo "$CHUNK" | tr a-z A-Z)" > "$TITUS_OUTPUT_PATH"',
        CHUNK=chunk,
        ENCODE_SECONDS=str(seconds),
    )


def merge_job(parts: list[JsonValue]) -> BatchJob:
    """Gets every encoded part (as JSON in $PARTS) and writes the merged result."""
    return _sh(
        "merge",
        'printf \'{"parts": %s, "count": %s}\' "$PARTS" "$COUNT" > "$TITUS_OUTPUT_PATH"',
        PARTS=json.dumps([p["encoded"] for p in parts if isinstance(p, dict)]),
        COUNT=str(len(parts)),
    )


@workflow.defn
class Pipeline:
    """split -> encode every chunk (bounded fan-out) -> merge."""

    @workflow.run
    async def run(self, params: PipelineInput) -> PipelineResult:
        """Run the three steps; any failed job fails the pipeline (JobFailedError)."""
        split = await run_job(split_job(params.chunks))
        listing = outputs(split)[0]
        if not isinstance(listing, list):
            raise ApplicationError(f"split wrote {listing!r}, not a list of chunks")
        chunks = [str(c) for c in listing]
        encoded_views = await gather_jobs(
            [encode_job(c, params.encode_seconds) for c in chunks],
            max_concurrent=params.max_concurrent,
        )
        encoded = [outputs(v)[0] for v in encoded_views]
        merge = await run_job(merge_job(encoded))
        return PipelineResult(
            chunks=chunks,
            encoded=encoded,
            merged=outputs(merge)[0],
            job_ids=[split.id, *(v.id for v in encoded_views), merge.id],
        )
