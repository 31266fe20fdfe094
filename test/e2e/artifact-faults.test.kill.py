# Starts a compile (argv[2:]) and kills it with SIGKILL as soon as its
# temporary file beside argv[1] appears, i.e. while it is writing; fails if
# the compile was never caught writing.
import glob, os, signal, subprocess, sys, time

target = sys.argv[1]
proc = subprocess.Popen(sys.argv[2:], stderr=subprocess.DEVNULL)
deadline = time.time() + 120
caught = False
while proc.poll() is None and time.time() < deadline:
    if glob.glob(target + ".tmp-*"):
        proc.send_signal(signal.SIGKILL)
        caught = True
        break
    time.sleep(0.0005)
proc.wait()
for leftover in glob.glob(target + ".tmp-*"):
    os.remove(leftover)  # what SIGKILL leaves: never at the output path
if not caught:
    sys.exit("the compile finished before it could be killed while writing")
