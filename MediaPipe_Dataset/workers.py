"""Worker processes for extract.py --jobs, standard library only: each worker has its own pipe,
and the main process hands out the tasks itself, so it always knows which input a worker
holds. A worker killed at any moment (SIGKILL, out of memory) then leaves no lock held and no
message half-sent that another would need: the input it held is named as an error and the
rest of its task goes to a new worker.
"""


class Workers:
    """`jobs` worker processes, each with its own pipe, and the tasks (lists of (index, input)) each one
    holds. The main process hands out the tasks, so it always knows which input a worker has:
    the first of its task not yet done."""

    def __init__(self, target, args, jobs, tasks):
        import multiprocessing
        self.target = target             # target(slot, pipe, args): one worker's loop
        self.context = multiprocessing.get_context("spawn")   # no fork of a process that may hold threads
        self.args, self.pending, self.done = args, list(tasks), {}
        self.slots = [self.start(slot) for slot in range(jobs)]

    def start(self, slot):
        """A new worker for `slot`, given the next task: [process, pipe, its task or None]."""
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=self.target, args=(slot, theirs, self.args), daemon=True)
        process.start()
        theirs.close()
        entry = [process, ours, None]
        self.give(entry)
        return entry

    def give(self, entry):
        entry[2] = self.pending.pop(0) if self.pending else None
        try:
            entry[1].send(entry[2])
        except OSError:                  # it died already: its sentinel says so next
            pass

    def wait(self, timeout=0.5):
        """Take what the workers sent within `timeout` seconds, and replace the dead."""
        from multiprocessing.connection import wait
        ready = wait([e[1] for e in self.slots if e[2]] + [e[0].sentinel for e in self.slots if e[2]], timeout)
        for slot, entry in enumerate(self.slots):
            process, conn, task = entry
            if task and conn in ready:
                try:
                    index, outcome = conn.recv()
                except (EOFError, OSError):      # it died, after what it sent whole
                    self.died(slot, entry)
                    continue
                self.done[index] = outcome
                if all(i in self.done for i, _ in task):
                    self.give(entry)
            elif task and process.sentinel in ready and not conn.poll():
                self.died(slot, entry)

    def died(self, slot, entry):
        """A worker ended while holding a task: the input it held is an error, the rest of its
        task goes first in the queue, and a new worker takes its slot."""
        process, conn, task = entry
        process.join()
        code = process.exitcode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        rest = [(i, p) for i, p in task if i not in self.done]
        index, path = rest[0]
        self.done[index] = ("error", f"{path}: the worker extracting it died ({how}; out of memory?)")
        if rest[1:]:
            self.pending.insert(0, rest[1:])
        conn.close()
        self.slots[slot] = self.start(slot)

    def stop(self):
        for process, conn, _ in self.slots:
            process.terminate()
        for process, conn, _ in self.slots:
            process.join()
            conn.close()
