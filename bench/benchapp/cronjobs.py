"""django-cron jobs for the peer benchmark: one trivial class per job.

Imported only in the django-cron virtual environment. ``RUN_EVERY_MINS = 0``
makes every job due on every ``runcrons``, the way its docs describe a job
that runs at each invocation.
"""

from __future__ import annotations

from django_cron import CronJobBase, Schedule

from bench.benchapp.functions import trivial


class TrivialJob(CronJobBase):
    RUN_EVERY_MINS = 0
    schedule = Schedule(run_every_mins=RUN_EVERY_MINS)
    code = "bench.trivial"

    def do(self) -> None:
        trivial()


# Up to 5000 jobs; settings.CRON_CLASSES names the first BENCH_FUNCTIONS.
for _i in range(5000):
    _name = f"Job{_i:04d}"
    globals()[_name] = type(
        _name, (TrivialJob,), {"code": f"bench.job{_i:04d}", "__module__": __name__}
    )
