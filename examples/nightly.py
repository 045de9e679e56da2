"""A nightly report: a plain batch job meant to run on a schedule.

Schedule it (Temporal Schedules; each run shows in `titus-flow jobs list`)::

    titus-flow schedule create nightly-report --cron "0 2 * * *" --timezone Europe/Paris \
        examples/nightly.py
    titus-flow schedule trigger nightly-report   # one run now
    titus-flow schedule list

It is also an ordinary job file: `titus-flow run examples/nightly.py` runs it once.
"""

from titus_flow import BatchJob, Container, Resources, Retry

report = BatchJob(
    name="nightly-report",
    owner="data-team@example.com",
    container=Container(
        image="busybox:latest",
        command=[
            "sh",
            "-c",
            'echo "report for $(date -u +%F)";'
            ' printf \'{"rows": %s}\' "$(seq 1 42 | wc -l)" > "$TITUS_OUTPUT_PATH"',
        ],
    ),
    resources=Resources(cpu=0.1, memory="32Mi", disk=0),
    retry=Retry(attempts=3),
    runtime_limit="10m",
)
