"""Subprocess helper: allocate event seqs for one user from a separate process."""

import sys
import time

import django


def main() -> None:
    django.setup()
    from django.contrib.auth import get_user_model

    from agents.events.store import event_record
    from agents.models import Agent, Run, Thread

    mode = sys.argv[1]
    if mode == "setup":
        user = get_user_model().objects.create_user(username="seq-user")
        thread = Thread.objects.create(user=user)
        run = Run.objects.create(
            user=user, agent=Agent.objects.get(name="stepper"), thread=thread, message="m"
        )
        print(user.pk, run.pk)
    else:
        user_id, run_id, count = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        # Start together with the other workers, so their transactions really overlap.
        time.sleep(max(0.0, float(sys.argv[5]) - time.time()))
        seqs = [
            event_record(
                user_id=user_id, run_id=run_id, event_type="partial_result", data={"delta": mode}
            )[0]
            for _ in range(count)
        ]
        print(" ".join(map(str, seqs)))


if __name__ == "__main__":
    main()
