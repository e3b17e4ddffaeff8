// map_stress for real Windows guests (C# 5; see HvlabEbpf.cs). Worker threads hammer maps of
// any type id (a custom type such as the sample extension's 15, or a built-in one) with a
// seeded find/update/delete mix through EbpfApi, optionally also through a program's helper
// (bpf_prog_test_run_opts on a program that reads its own map of that type while the
// workers replace and delete that map's entries), optionally recreating their maps every
// --map-lifetime so a pending extension stop can complete mid-run. Prints one JSON line.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

namespace Hvlab
{
    public class MapStress
    {
        public const string Usage = "usage: map_stress [--threads N] [--duration D] [--keys N] [--mix find:50,update:30,delete:20] " +
            "[--map-type sample|hash] [--map-type-id N] [--key-size N] [--value-size N] [--max-entries N] [--maps N] " +
            "[--map-lifetime D] [--ops N] [--helpers --program FILE --program-name NAME [--program-map NAME] [--program-config map:key=value,...]] [--seed S]";

        // BPF_MAP_TYPE_HASH = 1 and BPF_MAP_TYPE_SAMPLE_HASH_MAP = 15 (include/ebpf_structs.h).
        const uint HashType = 1;
        const uint SampleType = 15;
        // The sample extension's program context (sample_program_context_t) is 32 bytes.
        const int ContextBytes = 32;
        const int DataBytes = 32;
        const int Batch = 64;
        static readonly TimeSpan StuckGrace = TimeSpan.FromSeconds(1);

        class Config
        {
            public int Threads, Keys, Maps, Find, Update, Delete;
            public uint MapType, KeySize, ValueSize, MaxEntries;
            public TimeSpan Duration;
            public TimeSpan? Lifetime;
            public bool Helpers;
            public ulong Seed;
            // Stop after this many operations (0: only Duration ends the run).
            public long Ops;
            public string Program, ProgramName, ProgramMap, ProgramConfig;
        }

        /// <summary>One map shared by a group of threads; the group's leader recreates it.</summary>
        class Slot
        {
            public readonly ReaderWriterLockSlim Lock = new ReaderWriterLockSlim(LockRecursionPolicy.NoRecursion);
            public int Fd = -1;
        }

        /// <summary>The loaded program object; thread 0 loads and (with a lifetime) reloads it.</summary>
        class ProgramSlot
        {
            public readonly ReaderWriterLockSlim Lock = new ReaderWriterLockSlim(LockRecursionPolicy.NoRecursion);
            public IntPtr Obj = IntPtr.Zero;
            public int ProgFd = -1;
            public int MapFd = -1;
        }

        // Counters (Interlocked). `errors` counts unexplained failures (what scenarios check);
        // the error kinds are provider_away (-EINVAL from a create, load or test run: the
        // extension is not there), key_missing (-ENOENT: normal in a random mix) and
        // other_errors (everything else, also counted in `errors`).
        long ops, finds, hits, updates, deletes, errors, refused, helperCalls, createFailures,
            mapsCreated, providerAway, keyMissing, otherErrors;
        string firstError;
        volatile bool stop, fatal;
        readonly Config cfg;
        readonly Slot[] slots;
        readonly ProgramSlot prog = new ProgramSlot();

        MapStress(Config c)
        {
            cfg = c;
            slots = new Slot[c.Maps];
            for (int i = 0; i < slots.Length; i++) slots[i] = new Slot();
        }

        static Config Parse(string[] argv)
        {
            var a = new Args(argv,
                new[] { "threads", "duration", "keys", "mix", "map-type", "map-type-id", "key-size", "value-size", "max-entries",
                        "maps", "map-lifetime", "ops", "seed", "program", "program-name", "program-map", "program-config" },
                new[] { "helpers" });
            if (a.Positional.Count > 0) throw new UsageException("unexpected argument `" + a.Positional[0] + "`");
            var c = new Config();
            c.Threads = (int)a.Int("threads", 4, 1, 256);
            c.Duration = a.Duration("duration", TimeSpan.FromSeconds(5)).Value;
            c.Keys = (int)a.Int("keys", 64, 1, 1 << 20);
            ParseMix(a.Get("mix", "find:50,update:30,delete:20"), c);
            string type = a.Get("map-type", "sample");
            if (type == "sample") c.MapType = SampleType;
            else if (type == "hash") c.MapType = HashType;
            else throw new UsageException("--map-type: unknown type `" + type + "` (sample, hash; or --map-type-id N)");
            c.MapType = (uint)a.Int("map-type-id", c.MapType, 1, uint.MaxValue);
            c.KeySize = (uint)a.Int("key-size", 4, 1, 1024);
            c.ValueSize = (uint)a.Int("value-size", 4, 1, 65536);
            c.MaxEntries = (uint)a.Int("max-entries", c.Keys, 1, uint.MaxValue);
            if (c.KeySize < 4 && c.Keys > (1L << (int)(8 * c.KeySize)))
                throw new UsageException("--keys does not fit in --key-size bytes");
            c.Maps = (int)a.Int("maps", 1, 1, 64);
            c.Lifetime = a.Duration("map-lifetime", null);
            if (c.Lifetime.HasValue && c.Lifetime.Value <= TimeSpan.Zero)
                throw new UsageException("--map-lifetime must be more than 0");
            c.Ops = (long)a.Int("ops", 0, 0, long.MaxValue);
            c.Helpers = a.Flag("helpers");
            string seed = a.Get("seed", "0");
            if (!ulong.TryParse(seed, NumberStyles.Integer, CultureInfo.InvariantCulture, out c.Seed))
                throw new UsageException("--seed: `" + seed + "` is not a whole number");
            c.Program = a.Get("program", null);
            c.ProgramName = a.Get("program-name", null);
            c.ProgramMap = a.Get("program-map", null);
            c.ProgramConfig = a.Get("program-config", null);
            if (c.Helpers && (c.Program == null || c.ProgramName == null))
                throw new UsageException("--helpers needs --program FILE and --program-name NAME (the program whose helper reads the map)");
            if (c.Helpers && !File.Exists(c.Program))
                throw new UsageException("--program: file `" + c.Program + "` does not exist");
            return c;
        }

        static void ParseMix(string text, Config c)
        {
            foreach (string part in text.Split(','))
            {
                int colon = part.IndexOf(':');
                if (colon < 0) throw new UsageException("--mix: `" + part + "` is not op:weight");
                string op = part.Substring(0, colon).Trim();
                int w;
                if (!int.TryParse(part.Substring(colon + 1).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out w) || w < 0)
                    throw new UsageException("--mix: weight of " + op + " is not a number");
                if (op == "find") c.Find = w;
                else if (op == "update") c.Update = w;
                else if (op == "delete") c.Delete = w;
                else throw new UsageException("--mix: unknown operation `" + op + "` (find, update, delete)");
            }
            if (c.Find + c.Update + c.Delete == 0) throw new UsageException("--mix: weights add up to 0");
        }

        void Fail(string what, int rc)
        {
            Interlocked.Increment(ref errors);
            Interlocked.Increment(ref otherErrors);
            Interlocked.CompareExchange(ref firstError, "failed to " + what + ": " + Errno.Name(-rc), null);
        }

        /// <summary>Counts a map operation's result by kind.</summary>
        void Classify(string what, int rc)
        {
            if (rc == 0) return;
            if (rc == -Errno.ENOENT) Interlocked.Increment(ref keyMissing);
            else if (rc == -Errno.ENOTSUP) Interlocked.Increment(ref refused);
            else Fail(what, rc);
        }

        /// <summary>Creates the slot's map; a create refused while the provider is away is counted, not an error.</summary>
        bool Create(Slot slot)
        {
            int fd = Native.bpf_map_create(cfg.MapType, "hvlab_stress", cfg.KeySize, cfg.ValueSize, cfg.MaxEntries, IntPtr.Zero);
            if (fd >= 0)
            {
                slot.Lock.EnterWriteLock();
                slot.Fd = fd;
                slot.Lock.ExitWriteLock();
                Interlocked.Increment(ref mapsCreated);
                return true;
            }
            Interlocked.Increment(ref createFailures);
            if (fd == -Errno.EINVAL)
            {
                Interlocked.Increment(ref providerAway);
                return false;
            }
            Fail("create a map of type " + cfg.MapType.ToString(CultureInfo.InvariantCulture), fd);
            if (fd == -Errno.EPERM) fatal = true;
            return false;
        }

        void Close(Slot slot)
        {
            slot.Lock.EnterWriteLock();
            int fd = slot.Fd;
            slot.Fd = -1;
            slot.Lock.ExitWriteLock();
            if (fd >= 0) Native.ebpf_close_fd(fd);
        }

        /// <summary>Opens and loads the program object and applies --program-config; false if it failed.</summary>
        bool LoadProgram()
        {
            IntPtr obj = Native.bpf_object__open(cfg.Program);
            if (obj == IntPtr.Zero)
            {
                Fail("open program object " + cfg.Program, -Errno.EOTHER);
                fatal = true;
                return false;
            }
            int rc = Native.bpf_object__load(obj);
            if (rc != 0)
            {
                Native.bpf_object__close(obj);
                if (rc == -Errno.EINVAL) Interlocked.Increment(ref providerAway);
                else Fail("load program object " + cfg.Program, rc);
                return false;
            }
            IntPtr p = Native.bpf_object__find_program_by_name(obj, cfg.ProgramName);
            int progFd = p == IntPtr.Zero ? -1 : Native.bpf_program__fd(p);
            int mapFd = -1;
            if (cfg.ProgramMap != null)
            {
                IntPtr m = Native.bpf_object__find_map_by_name(obj, cfg.ProgramMap);
                mapFd = m == IntPtr.Zero ? -1 : Native.bpf_map__fd(m);
            }
            if (progFd < 0 || (cfg.ProgramMap != null && mapFd < 0))
            {
                Native.bpf_object__close(obj);
                Fail("find program `" + cfg.ProgramName + "`" + (cfg.ProgramMap == null ? "" : " and map `" + cfg.ProgramMap + "`") + " in " + cfg.Program, -Errno.ENOENT);
                fatal = true;
                return false;
            }
            if (!ApplyConfig(obj))
            {
                Native.bpf_object__close(obj);
                return false;
            }
            prog.Lock.EnterWriteLock();
            prog.Obj = obj;
            prog.ProgFd = progFd;
            prog.MapFd = mapFd;
            prog.Lock.ExitWriteLock();
            return true;
        }

        /// <summary>`map:key=value,...`: 4-byte entries written before the program runs (e.g. which map it reads).</summary>
        bool ApplyConfig(IntPtr obj)
        {
            if (string.IsNullOrEmpty(cfg.ProgramConfig)) return true;
            foreach (string entry in cfg.ProgramConfig.Split(','))
            {
                int colon = entry.IndexOf(':'), eq = entry.IndexOf('=');
                uint k, v;
                if (colon < 0 || eq < colon
                    || !uint.TryParse(entry.Substring(colon + 1, eq - colon - 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out k)
                    || !uint.TryParse(entry.Substring(eq + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out v))
                {
                    throw new UsageException("--program-config: `" + entry + "` is not map:key=value");
                }
                string name = entry.Substring(0, colon);
                IntPtr m = Native.bpf_object__find_map_by_name(obj, name);
                int fd = m == IntPtr.Zero ? -1 : Native.bpf_map__fd(m);
                int rc = fd < 0 ? -Errno.ENOENT : Native.bpf_map_update_elem(fd, Bytes.Of(k, 4), Bytes.Of(v, 4), 0);
                if (rc != 0)
                {
                    Fail("write --program-config entry " + entry, rc);
                    fatal = true;
                    return false;
                }
            }
            return true;
        }

        void CloseProgram()
        {
            prog.Lock.EnterWriteLock();
            IntPtr obj = prog.Obj;
            prog.Obj = IntPtr.Zero;
            prog.ProgFd = -1;
            prog.MapFd = -1;
            prog.Lock.ExitWriteLock();
            if (obj != IntPtr.Zero) Native.bpf_object__close(obj);
        }

        /// <summary>One operation through the program: a helper read (test run), or a user-mode replace/delete of the entry it reads.</summary>
        bool HelperOp(int pick, Random rng, ref BpfTestRunOpts opts)
        {
            prog.Lock.EnterReadLock();
            try
            {
                if (prog.ProgFd < 0) return false;
                Interlocked.Increment(ref helperCalls);
                if (pick < cfg.Find || prog.MapFd < 0)
                {
                    Interlocked.Increment(ref finds);
                    opts.repeat = 1;
                    int rc = Native.bpf_prog_test_run_opts(prog.ProgFd, ref opts);
                    if (rc == -Errno.EINVAL) Interlocked.Increment(ref providerAway);
                    else Classify("test-run program `" + cfg.ProgramName + "`", rc);
                }
                else if (pick < cfg.Find + cfg.Update)
                {
                    Interlocked.Increment(ref updates);
                    Classify("update the program's map", Native.bpf_map_update_elem(prog.MapFd, Bytes.Of(0, 4), Bytes.Of((ulong)rng.Next(), 4), 0));
                }
                else
                {
                    Interlocked.Increment(ref deletes);
                    Classify("delete from the program's map", Native.bpf_map_delete_elem(prog.MapFd, Bytes.Of(0, 4)));
                }
                return true;
            }
            finally
            {
                prog.Lock.ExitReadLock();
            }
        }

        void Worker(int i)
        {
            ulong mixed = cfg.Seed ^ ((ulong)i * 0x9E3779B97F4A7C15UL);
            var rng = new Random((int)(mixed ^ (mixed >> 32)));
            int group = i % cfg.Maps;
            bool leader = i < cfg.Maps;
            bool progLeader = i == 0 && cfg.Helpers;
            Slot slot = slots[group];
            var born = Stopwatch.StartNew();
            int total = cfg.Find + cfg.Update + cfg.Delete;
            var value = new byte[cfg.ValueSize];
            IntPtr ctx = Marshal.AllocHGlobal(ContextBytes), data = Marshal.AllocHGlobal(DataBytes);
            try
            {
                for (int b = 0; b < ContextBytes; b++) Marshal.WriteByte(ctx, b, 0);
                for (int b = 0; b < DataBytes; b++) Marshal.WriteByte(data, b, 0);
                var opts = new BpfTestRunOpts();
                opts.sz = (UIntPtr)Marshal.SizeOf(typeof(BpfTestRunOpts));
                opts.ctx_in = ctx;
                opts.ctx_size_in = ContextBytes;
                opts.data_in = data;
                opts.data_size_in = DataBytes;
                while (!stop)
                {
                    if (leader && cfg.Lifetime.HasValue && born.Elapsed >= cfg.Lifetime.Value)
                    {
                        // Close first so that a pending extension stop can complete.
                        Close(slot);
                        if (progLeader) CloseProgram();
                        born.Restart();
                    }
                    if (progLeader && prog.ProgFd < 0 && !LoadProgram() && !fatal) Thread.Sleep(2);
                    if (fatal)
                    {
                        stop = true;
                        break;
                    }
                    slot.Lock.EnterReadLock();
                    int fd = slot.Fd;
                    if (fd < 0)
                    {
                        slot.Lock.ExitReadLock();
                        if (leader)
                        {
                            if (!Create(slot)) Thread.Sleep(2);
                            born.Restart();
                        }
                        else Thread.Sleep(1);
                        if (fatal) stop = true;
                        continue;
                    }
                    try
                    {
                        for (int n = 0; n < Batch && !stop; n++)
                        {
                            ulong k = (ulong)rng.Next(cfg.Keys);
                            int pick = rng.Next(total);
                            bool viaHelper = cfg.Helpers && rng.Next(2) == 0;
                            // A count bounds what the run allocates, whatever the machine's speed.
                            if (cfg.Ops > 0 && Interlocked.Increment(ref ops) > cfg.Ops)
                            {
                                Interlocked.Decrement(ref ops);
                                stop = true;
                                break;
                            }
                            if (cfg.Ops == 0) Interlocked.Increment(ref ops);
                            if (viaHelper && HelperOp(pick, rng, ref opts)) continue;
                            byte[] kb = Bytes.Of(k, (int)cfg.KeySize);
                            if (pick < cfg.Find)
                            {
                                Interlocked.Increment(ref finds);
                                int rc = Native.bpf_map_lookup_elem(fd, kb, value);
                                if (rc == 0) Interlocked.Increment(ref hits);
                                Classify("look up a key", rc);
                            }
                            else if (pick < cfg.Find + cfg.Update)
                            {
                                Interlocked.Increment(ref updates);
                                Classify("update a key", Native.bpf_map_update_elem(fd, kb, Bytes.Of((ulong)rng.Next(), (int)cfg.ValueSize), 0));
                            }
                            else
                            {
                                Interlocked.Increment(ref deletes);
                                Classify("delete a key", Native.bpf_map_delete_elem(fd, kb));
                            }
                        }
                    }
                    finally
                    {
                        slot.Lock.ExitReadLock();
                    }
                }
            }
            finally
            {
                Marshal.FreeHGlobal(ctx);
                Marshal.FreeHGlobal(data);
            }
        }

        public static int Run(string[] argv)
        {
            Config cfg;
            try { cfg = Parse(argv); }
            catch (UsageException e) { throw new UsageException(e.Message + "\n" + Usage); }
            return new MapStress(cfg).Go();
        }

        int Go()
        {
            var clock = Stopwatch.StartNew();
            foreach (Slot s in slots)
            {
                if (fatal) break;
                Create(s);
            }
            var threads = new List<Thread>();
            for (int i = 0; i < cfg.Threads && !fatal; i++)
            {
                int id = i;
                var t = new Thread(delegate() { Worker(id); });
                t.IsBackground = true; // a thread stuck inside the kernel must not keep the tool alive
                t.Name = "map_stress-" + id.ToString(CultureInfo.InvariantCulture);
                t.Start();
                threads.Add(t);
            }
            while (clock.Elapsed < cfg.Duration && !stop && !fatal)
            {
                TimeSpan left = cfg.Duration - clock.Elapsed;
                Thread.Sleep(left < TimeSpan.FromMilliseconds(5) ? left : TimeSpan.FromMilliseconds(5));
            }
            stop = true;
            var grace = Stopwatch.StartNew();
            long stuck = 0;
            foreach (Thread t in threads)
            {
                TimeSpan left = StuckGrace - grace.Elapsed;
                if (!t.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero)) stuck++;
            }
            if (stuck == 0)
            {
                foreach (Slot s in slots) Close(s);
                CloseProgram();
            }
            var line = new JsonLine()
                .Num("ops", ops).Num("finds", finds).Num("hits", hits).Num("updates", updates).Num("deletes", deletes)
                .Num("errors", errors).Num("refused", refused).Num("helper_calls", helperCalls)
                .Num("create_failures", createFailures).Num("maps_created", mapsCreated)
                .Num("provider_away", providerAway).Num("key_missing", keyMissing).Num("other_errors", otherErrors)
                .Num("stuck_threads", stuck).Num("elapsed_ms", (long)clock.Elapsed.TotalMilliseconds);
            Console.Out.WriteLine(line.ToString());
            Console.Out.Flush();
            if (firstError != null) Console.Error.WriteLine("map_stress: " + firstError);
            if (stuck > 0)
                Console.Error.WriteLine("map_stress: " + stuck.ToString(CultureInfo.InvariantCulture) +
                    " worker thread(s) did not return from EbpfApi within 1s of the end");
            return errors > 0 || stuck > 0 ? 1 : 0;
        }
    }
}
