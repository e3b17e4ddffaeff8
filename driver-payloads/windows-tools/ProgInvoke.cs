// prog_invoke for real Windows guests: loads upstream's sample program (test_sample_ebpf.sys,
// program `test_program_entry`, attach type sample), attaches it to the sample extension's
// hook `links` times (bpf_program__attach), and runs the hook from several threads through
// the extension's own run IOCTL (IOCTL_SAMPLE_EBPF_EXT_CTL_RUN on \\.\SampleEbpfExtIoDevice),
// the path upstream's sample_ext_app takes. Prints the sim tool's JSON counters.
//
// While the extension restarts, the device is gone or the request is refused: those runs are
// counted as extension_away (clean failures), and the device is opened again. Any other
// failure is an error. A tool started while the extension is away (a restart loop beside it
// got there first) retries the load and the attaches, counted as extension_away, until the
// extension is back or the duration ends. The IOCTL does not say how many links ran, so invocations counts
// successful runs of the hook.
//
// C# 5 only (see HvlabEbpf.cs).
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Hvlab
{
    public class ProgInvoke
    {
        const string Usage = "usage: prog_invoke [--threads N] [--duration D] [--links N] [--rate N] " +
            "[--link-lifetime D] [--program PATH] [--program-name NAME] [--device PATH] [--seed S]";

        /// <summary>CTL_CODE(FILE_DEVICE_NETWORK, SAMPLE_EBPF_EXT_CONTROL_RUN, METHOD_BUFFERED, FILE_ANY_ACCESS).</summary>
        const uint IoctlRun = 0x00120000;
        const uint GenericReadWrite = 0xC0000000;
        const uint OpenExisting = 3;

        [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
        static extern IntPtr CreateFileW(string name, uint access, uint share, IntPtr security, uint disposition, uint flags, IntPtr template);
        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool DeviceIoControl(IntPtr h, uint code, byte[] inBuf, uint inSize, byte[] outBuf, uint outSize, out uint returned, IntPtr overlapped);
        [DllImport("kernel32.dll", SetLastError = true)]
        static extern bool CloseHandle(IntPtr h);
        [DllImport("EbpfApi", CallingConvention = CallingConvention.Cdecl)]
        static extern IntPtr bpf_program__attach(IntPtr prog);
        [DllImport("EbpfApi", CallingConvention = CallingConvention.Cdecl)]
        static extern int bpf_link__destroy(IntPtr link);

        static readonly IntPtr InvalidHandle = new IntPtr(-1);

        long calls, invocations, away, errors;
        string firstError;
        volatile bool stop;
        int rate;
        string device;

        /// <summary>Win32 errors that mean "the extension is going or gone", not a failure.</summary>
        static bool ExtensionAway(int err)
        {
            switch (err)
            {
                case 2: // ERROR_FILE_NOT_FOUND: no device (extension stopped)
                case 6: // ERROR_INVALID_HANDLE: the device went away under an open handle
                case 31: // ERROR_GEN_FAILURE: the run was refused (hook client detaching)
                case 50: // ERROR_NOT_SUPPORTED
                case 995: // ERROR_OPERATION_ABORTED
                case 1167: // ERROR_DEVICE_NOT_CONNECTED
                case 1168: // ERROR_NOT_FOUND
                case 1200: // ERROR_BAD_DEVICE
                    return true;
                default:
                    return false;
            }
        }

        void Error(string what)
        {
            Interlocked.Increment(ref errors);
            Interlocked.CompareExchange(ref firstError, what, null);
        }

        void Worker()
        {
            IntPtr h = InvalidHandle;
            var buf = new byte[32];
            var period = rate > 0 ? TimeSpan.FromTicks(TimeSpan.TicksPerSecond / rate) : TimeSpan.Zero;
            var next = DateTime.UtcNow;
            while (!stop)
            {
                if (rate > 0)
                {
                    var now = DateTime.UtcNow;
                    if (now < next) { Thread.Sleep(next - now > TimeSpan.FromMilliseconds(5) ? TimeSpan.FromMilliseconds(5) : next - now); continue; }
                    next += period;
                }
                Interlocked.Increment(ref calls);
                if (h == InvalidHandle)
                {
                    h = CreateFileW(device, GenericReadWrite, 0, IntPtr.Zero, OpenExisting, 0, IntPtr.Zero);
                    if (h == InvalidHandle)
                    {
                        int err = Marshal.GetLastWin32Error();
                        if (ExtensionAway(err)) { Interlocked.Increment(ref away); Thread.Sleep(1); }
                        else Error("failed to open " + device + ": Win32 error " + err);
                        continue;
                    }
                }
                uint returned;
                if (DeviceIoControl(h, IoctlRun, buf, (uint)buf.Length, buf, (uint)buf.Length, out returned, IntPtr.Zero))
                {
                    Interlocked.Increment(ref invocations);
                    continue;
                }
                int e = Marshal.GetLastWin32Error();
                if (ExtensionAway(e))
                {
                    Interlocked.Increment(ref away);
                    CloseHandle(h);
                    h = InvalidHandle;
                }
                else
                {
                    Error("failed to run the hook: Win32 error " + e);
                }
            }
            if (h != InvalidHandle) CloseHandle(h);
        }

        public static int Run(string[] argv)
        {
            var a = new Args(argv,
                new[] { "threads", "duration", "links", "rate", "link-lifetime", "program", "program-name", "device", "seed" },
                new string[0]);
            if (a.Positional.Count > 0) throw new UsageException("unexpected argument " + a.Positional[0] + "\n" + Usage);
            int threads = (int)a.Int("threads", 4, 1, 256);
            int links = (int)a.Int("links", 2, 1, 64);
            var t = new ProgInvoke();
            t.rate = (int)a.Int("rate", 0, 0, 1000000);
            t.device = a.Get("device", @"\\.\SampleEbpfExtIoDevice");
            TimeSpan duration = a.Duration("duration", TimeSpan.FromSeconds(2)).Value;
            TimeSpan? lifetime = a.Duration("link-lifetime", null);
            if (lifetime.HasValue && lifetime.Value <= TimeSpan.Zero) throw new UsageException("--link-lifetime must be more than 0");
            string path = a.Get("program", @"C:\eBPF\test_sample_ebpf.sys");
            string name = a.Get("program-name", "test_program_entry");

            var start = DateTime.UtcNow;
            var end = start + duration;
            IntPtr obj;
            while (true)
            {
                obj = Native.bpf_object__open(path);
                if (obj == IntPtr.Zero) { Console.Error.WriteLine("prog_invoke: failed to open " + path); return 1; }
                int rc = Native.bpf_object__load(obj);
                if (rc >= 0) break;
                // A failed load leaves the object unusable: close it and open it again.
                Native.bpf_object__close(obj);
                Interlocked.Increment(ref t.away);
                if (DateTime.UtcNow >= end)
                {
                    Console.Error.WriteLine("prog_invoke: failed to load " + path + ": " + Errno.Name(-rc) +
                        " (retried for the whole duration: the extension was away)");
                    return 1;
                }
                Thread.Sleep(10);
            }
            IntPtr prog = Native.bpf_object__find_program_by_name(obj, name);
            if (prog == IntPtr.Zero)
            {
                Native.bpf_object__close(obj);
                Console.Error.WriteLine("prog_invoke: no program " + name + " in " + path);
                return 1;
            }
            // Links that cannot attach now (the extension is away) are retried every tick below.
            var attached = new IntPtr[links];
            for (int i = 0; i < links; i++)
            {
                attached[i] = bpf_program__attach(prog);
                if (attached[i] == IntPtr.Zero) Interlocked.Increment(ref t.away);
            }
            var workers = new Thread[threads];
            for (int i = 0; i < threads; i++)
            {
                workers[i] = new Thread(t.Worker);
                workers[i].Start();
            }
            long relinks = 0;
            var tick = TimeSpan.FromMilliseconds(10);
            var relinked = DateTime.UtcNow;
            while (DateTime.UtcNow < end)
            {
                TimeSpan left = end - DateTime.UtcNow;
                if (left > TimeSpan.Zero) Thread.Sleep(left < tick ? left : tick);
                if (DateTime.UtcNow >= end) break;
                bool relink = lifetime.HasValue && DateTime.UtcNow - relinked >= lifetime.Value;
                // Detach every link and attach new ones while the workers keep running the hook.
                if (relink) { relinks++; relinked = DateTime.UtcNow; }
                for (int i = 0; i < links; i++)
                {
                    if (relink && attached[i] != IntPtr.Zero) { bpf_link__destroy(attached[i]); attached[i] = IntPtr.Zero; }
                    if (attached[i] != IntPtr.Zero) continue;
                    attached[i] = bpf_program__attach(prog);
                    if (attached[i] == IntPtr.Zero) Interlocked.Increment(ref t.away);
                }
            }
            t.stop = true;
            foreach (var w in workers) w.Join();
            long elapsed = (long)(DateTime.UtcNow - start).TotalMilliseconds;
            foreach (var l in attached) if (l != IntPtr.Zero) bpf_link__destroy(l);
            Native.bpf_object__close(obj);
            Console.WriteLine(new JsonLine()
                .Num("calls", Interlocked.Read(ref t.calls))
                .Num("invocations", Interlocked.Read(ref t.invocations))
                .Num("extension_away", Interlocked.Read(ref t.away))
                .Num("errors", Interlocked.Read(ref t.errors))
                .Num("program_runs", Interlocked.Read(ref t.invocations))
                .Num("links", links)
                .Num("relinks", relinks)
                .Num("elapsed_ms", elapsed)
                .ToString());
            if (t.firstError != null) Console.Error.WriteLine("prog_invoke: " + t.firstError);
            return Interlocked.Read(ref t.errors) > 0 ? 1 : 0;
        }
    }
}
