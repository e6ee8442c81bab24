"""`planeflow retry | cancel <WORK-ITEM>` and `planeflow requeue <MESSAGE-ID>`.

The same actions as the dashboard's buttons and the `/planeflow` comment commands
(`app.actions`), recorded with the OS user who ran them. They need Redis (and the
broker, on the same Redis) but no Plane call: the outbox tells Plane afterwards.
Exit 0 when the action was taken, 1 when it was refused (the reason is printed).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os

from app.actions import Origin
from app.config import Settings
from app.domain.errors import PlaneflowError
from app.domain.results import Handled
from app.services import Services


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


def _quiet() -> None:
    # The result is printed; the actions' own log line would say it twice.
    logging.getLogger("app.actions").setLevel(logging.WARNING)


def cmd_task_action(args: argparse.Namespace, settings: Settings) -> int:
    _quiet()
    services = Services(settings)
    try:
        task = services.store.find_task(args.work_item)
        if task is None:
            raise PlaneflowError(
                f"no task for {args.work_item} (see `planeflow tasks`; a task is made when "
                "the work item is moved to To Analyse or In Progress)"
            )
        origin = Origin("cli", os_user())
        act = services.actions.retry if args.command == "retry" else services.actions.cancel
        result = act(task, origin)
    finally:
        _close(services)
    print(f"{task.work_item_id}: {result}")
    return 1 if result.kind is Handled.IGNORED else 0


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    _quiet()
    services = Services(settings)
    try:
        result = services.actions.requeue(args.message_id, Origin("cli", os_user()))
    finally:
        _close(services)
    print(f"{args.message_id}: {result}")
    return 1 if result.kind is Handled.IGNORED else 0


def _close(services: Services) -> None:
    if services.broker is not None:
        services.broker.close()
    services.close()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = sub.add_parser("retry", help="resume a blocked task at the stage that failed")
    retry.add_argument("work_item", help="e.g. ORCH-12")
    retry.set_defaults(func=cmd_task_action)
    cancel = sub.add_parser("cancel", help="cancel a task (its running job is stopped)")
    cancel.add_argument("work_item", help="e.g. ORCH-12")
    cancel.set_defaults(func=cmd_task_action)
    requeue = sub.add_parser("requeue", help="send a dead-lettered message again")
    requeue.add_argument("message_id", help="its id, as the dashboard lists it")
    requeue.set_defaults(func=cmd_requeue)
