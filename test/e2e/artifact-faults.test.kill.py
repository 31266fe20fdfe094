# kill.py OLD NEW TARGET CMD...: runs the compile CMD (which writes TARGET,
# where a copy of OLD lies) and kills it with SIGKILL as soon as its temporary
# file beside TARGET appears, i.e. while it is writing. TARGET must then hold
# OLD or, had the kill come after the rename, NEW (the complete artifact):
# never anything else. Tries up to 5 times to catch a compile writing.
import filecmp, glob, os, shutil, signal, subprocess, sys, time

old, new, target, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
for attempt in range(5):
    shutil.copyfile(old, target)
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    caught = False
    while proc.poll() is None and time.time() < deadline:
        if glob.glob(target + ".tmp-*"):
            proc.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.0002)
    proc.wait()
    for leftover in glob.glob(target + ".tmp-*"):
        os.remove(leftover)  # what SIGKILL leaves: beside the path, never at it
    if not (filecmp.cmp(target, old, shallow=False) or filecmp.cmp(target, new, shallow=False)):
        sys.exit("after the kill, %s holds neither the old nor the new artifact" % target)
    if caught:
        print("killed while writing; %s is intact" % target)
        sys.exit(0)
sys.exit("no compile could be caught writing in 5 tries")
