"""A small pymesos scheduler, written the way pymesos's own examples are; run by the gateway's test
in a virtual environment holding pymesos 0.3.15 (scripts/pymesos-venv.sh), never imported.

    python pymesos_scheduler.py MASTER COUNT IMAGE

Launches COUNT Docker tasks (``echo``) on whatever offers come, acknowledges their updates (pymesos's
implicit acknowledgements), stops (tearing the framework down) when all have finished, and prints one
JSON line: the framework id and each task's final state.
"""

import json
import logging
import sys
import threading
import uuid

from addict import Dict
from pymesos import MesosSchedulerDriver, Scheduler

TASK_CPUS = 0.1
TASK_MEM = 32


def get_resource(resources, name):
    return sum(r.scalar.value for r in resources if r.name == name)


class EchoScheduler(Scheduler):
    def __init__(self, count, image):
        self.image = image
        self.to_launch = count
        self.count = count
        self.final = {}
        self.seen = []
        self.framework_id = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id.value
        logging.info("registered as %s with %s", framework_id.value, master_info)

    def resourceOffers(self, driver, offers):
        filters = {"refuse_seconds": 5}
        for offer in offers:
            cpus = get_resource(offer.resources, "cpus")
            mem = get_resource(offer.resources, "mem")
            tasks = []
            with self.lock:
                while self.to_launch > 0 and cpus >= TASK_CPUS and mem >= TASK_MEM:
                    task = Dict()
                    task_id = str(uuid.uuid4())
                    task.task_id.value = task_id
                    task.agent_id.value = offer.agent_id.value
                    task.name = f"echo {task_id}"
                    task.container.type = "DOCKER"
                    task.container.docker.image = self.image
                    task.command.value = "echo hello from $HOSTNAME"
                    task.resources = [
                        dict(name="cpus", type="SCALAR", scalar={"value": TASK_CPUS}),
                        dict(name="mem", type="SCALAR", scalar={"value": TASK_MEM}),
                    ]
                    tasks.append(task)
                    cpus -= TASK_CPUS
                    mem -= TASK_MEM
                    self.to_launch -= 1
            if tasks:
                driver.launchTasks(offer.id, tasks, filters)
            else:
                driver.declineOffer(offer.id, filters)

    def statusUpdate(self, driver, update):
        logging.info("task %s is in state %s", update.task_id.value, update.state)
        with self.lock:
            self.seen.append(update.state)
            if update.state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR"):
                self.final[update.task_id.value] = update.state
                if len(self.final) == self.count:
                    self.done.set()

    def error(self, driver, message):
        logging.error("error from the master: %s", message)


def main(master, count, image):
    framework = Dict()
    framework.user = "root"
    framework.name = "pymesos-echo"
    framework.hostname = "localhost"
    framework.failover_timeout = 60
    scheduler = EchoScheduler(count, image)
    driver = MesosSchedulerDriver(scheduler, framework, master, use_addict=True)
    driver.start()
    finished = scheduler.done.wait(240)
    driver.stop()  # not a failover: pymesos tears the framework down
    driver.join()
    print(
        json.dumps(
            {
                "framework_id": scheduler.framework_id,
                "finished": finished,
                "final": scheduler.final,
                "seen": scheduler.seen,
            }
        )
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pymesos %(levelname)s %(message)s")
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
