"""Jobs as Python objects: the primary way to write titus-flow jobs.

Run them: titus-flow run examples/retries.py
"""

from titus_flow import BatchJob, Container, ExponentialBackoff, Resources, Retry

small = Resources(cpu=0.1, memory="32Mi", disk=0)

# Fails on its first two attempts, then succeeds: exponential backoff between them.
flaky = BatchJob(
    name="flaky",
    owner="platform-team@example.com",
    container=Container(
        image="busybox:latest",
        command=["sh", "-c", 'echo "attempt $TITUS_TASK_ATTEMPT"; [ "$TITUS_TASK_ATTEMPT" -ge 3 ]'],
    ),
    resources=small,
    retry=Retry(attempts=3, backoff=ExponentialBackoff(initial="1s", max="10s")),
)

# Exit code 2 means "bad input" to this program: retrying would not help.
strict = BatchJob(
    name="strict",
    owner="platform-team@example.com",
    container=Container(image="busybox:latest", command=["sh", "-c", "echo done"]),
    resources=small,
    instances=2,
    retry=Retry(attempts=3, never_retry_on_exit_codes=[2]),
    runtime_limit="1m",
)
