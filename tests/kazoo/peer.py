"""A Kazoo client the interop tests drive over stdin/stdout (tests/src/kazoo.rs).

Usage: peer.py HOSTS. Reads one command per line and answers each with one line, in order.
Commands that wait (lock, elect) answer when they are done waiting, so the test can send them
and read the answer later:

  lock PATH ID          -> "locked" once Kazoo's Lock is acquired (30 s at most, else "timeout")
  trylock PATH ID       -> "locked" or "busy"
  unlock                -> "unlocked"
  contenders PATH       -> the contenders' identifiers, space-separated, holder first
  elect PATH ID         -> "leader" once Election.run calls the leader function; it leads
                           until "resign"
  resign                -> "resigned" once the leader function returned
  count PATH DELTA N    -> adds DELTA N times with Kazoo's Counter; "counted VALUE"
  put PATH VALUE PRIO   -> Queue.put; "put"
  get PATH              -> Queue.get; "got VALUE" or "empty"
  join PATH ID          -> joins Kazoo's Party; "joined"
  members PATH          -> the party's identifiers, sorted, space-separated
  lqput PATH VALUE PRIO -> LockingQueue.put; "put"
  lqget PATH            -> LockingQueue.get (5 s at most); "got VALUE" or "empty"
  lqconsume             -> LockingQueue.consume on the queue of the last lqget; "consumed"
  partition PATH ID ITEMS -> starts Kazoo's SetPartitioner (ITEMS comma-separated, a 1 s
                           time boundary) that calls release_set whenever it is asked to
                           release; "started"
  pwait                 -> waits (30 s at most) until the partitioner has acquired its
                           partition; "acquired ITEM,ITEM..." (sorted) or "state STATE"
  pfinish               -> SetPartitioner.finish; "finished"
  sacquire PATH ID MAX  -> Semaphore(max_leases=MAX).acquire(blocking=False); "acquired" or
                           "busy"
  srelease              -> releases the last semaphore's lease; "released"
  sholders PATH MAX     -> the lease holders' identifiers, sorted, space-separated
  quit                  -> "bye", then exits
Errors answer "error TYPE: MESSAGE".
"""
import sys
import threading

from kazoo.client import KazooClient


def main():
    zk = KazooClient(hosts=sys.argv[1], timeout=10.0)
    zk.start(timeout=15)
    out_lock = threading.Lock()

    def say(line):
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    lock = None
    resign = threading.Event()
    resigned = threading.Event()
    election_thread = None
    party = None
    locking_queue = None
    partitioner = None
    semaphore = None
    say("ready")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "lock":
                lock = zk.Lock(args[0], args[1])
                say("locked" if lock.acquire(timeout=30) else "timeout")
            elif cmd == "trylock":
                lock = zk.Lock(args[0], args[1])
                say("locked" if lock.acquire(blocking=False) else "busy")
            elif cmd == "unlock":
                lock.release()
                say("unlocked")
            elif cmd == "contenders":
                say(" ".join(zk.Lock(args[0]).contenders()))
            elif cmd == "elect":
                election = zk.Election(args[0], args[1])
                resign.clear()
                resigned.clear()

                def lead():
                    say("leader")
                    resign.wait()

                def run():
                    election.run(lead)
                    resigned.set()

                election_thread = threading.Thread(target=run, daemon=True)
                election_thread.start()
            elif cmd == "resign":
                resign.set()
                resigned.wait(30)
                say("resigned")
            elif cmd == "count":
                counter = zk.Counter(args[0])
                for _ in range(int(args[2])):
                    counter += int(args[1])
                say("counted %d" % counter.value)
            elif cmd == "put":
                zk.Queue(args[0]).put(args[1].encode(), priority=int(args[2]))
                say("put")
            elif cmd == "get":
                v = zk.Queue(args[0]).get()
                say("empty" if v is None else "got " + v.decode())
            elif cmd == "join":
                party = zk.Party(args[0], args[1])
                party.join()
                say("joined")
            elif cmd == "members":
                say(" ".join(sorted(zk.Party(args[0]))))
            elif cmd == "lqput":
                zk.LockingQueue(args[0]).put(args[1].encode(), priority=int(args[2]))
                say("put")
            elif cmd == "lqget":
                locking_queue = zk.LockingQueue(args[0])
                v = locking_queue.get(timeout=5)
                say("empty" if v is None else "got " + v.decode())
            elif cmd == "lqconsume":
                say("consumed" if locking_queue.consume() else "not consumed")
            elif cmd == "partition":
                changed = threading.Event()
                partitioner = zk.SetPartitioner(
                    args[0], set(args[2].split(",")), identifier=args[1],
                    time_boundary=1, state_change_event=changed)

                def keep_allocating(p=partitioner, changed=changed):
                    while not p.failed:
                        changed.clear()
                        if p.release:
                            p.release_set()
                        changed.wait()

                threading.Thread(target=keep_allocating, daemon=True).start()
                say("started")
            elif cmd == "pwait":
                partitioner.wait_for_acquire(30)
                if partitioner.acquired:
                    say("acquired " + ",".join(sorted(partitioner)))
                else:
                    say("state " + partitioner.state)
            elif cmd == "pfinish":
                partitioner.finish()
                say("finished")
            elif cmd == "sacquire":
                semaphore = zk.Semaphore(args[0], args[1], max_leases=int(args[2]))
                say("acquired" if semaphore.acquire(blocking=False) else "busy")
            elif cmd == "srelease":
                semaphore.release()
                say("released")
            elif cmd == "sholders":
                sem = zk.Semaphore(args[0], max_leases=int(args[1]))
                say(" ".join(sorted(sem.lease_holders())))
            elif cmd == "quit":
                say("bye")
                break
            else:
                say("error ValueError: unknown command " + cmd)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            say("error %s: %s" % (type(e).__name__, e))
    zk.stop()
    zk.close()


if __name__ == "__main__":
    main()
