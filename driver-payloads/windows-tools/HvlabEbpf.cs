// hvlab's guest tools for real Windows guests: map_stress, map_tool, ebpf_stats and prog_invoke, calling
// eBPF for Windows' user-mode API (EbpfApi.dll, libbpf-compatible) by P/Invoke.
//
// Compiled at run time by Windows PowerShell 5.1's `Add-Type` (hvlab_tools.ps1), so this file
// must stay C# 5: no interpolated strings, `?.`, `nameof`, expression-bodied members or
// `out var`. hvlab's tests compile it with `mcs -langversion:5` and run it under mono against
// a stand-in libEbpfApi.so (orchestrator/lab-backends/tests/it/wintool/).
//
// Output contract (shared with the simulated lab's tools): exit 0 on success, 1 when an
// operation failed unexpectedly, 2 on bad arguments; map_stress prints exactly one JSON line
// of numeric counters on stdout; problems go to stderr.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Hvlab
{
    /// <summary>libbpf's `struct bpf_map_create_opts` (external/libbpf/src/bpf.h), x64: 48 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct BpfMapCreateOpts
    {
        public UIntPtr sz;
        public uint btf_fd;
        public uint btf_key_type_id;
        public uint btf_value_type_id;
        public uint btf_vmlinux_value_type_id;
        public uint inner_map_fd;
        public uint map_flags;
        public ulong map_extra;
        public uint numa_node;
        public uint map_ifindex;
    }

    /// <summary>libbpf's `struct bpf_test_run_opts` (external/libbpf/src/bpf.h), x64: 80 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct BpfTestRunOpts
    {
        public UIntPtr sz;
        public IntPtr data_in;
        public IntPtr data_out;
        public uint data_size_in;
        public uint data_size_out;
        public IntPtr ctx_in;
        public IntPtr ctx_out;
        public uint ctx_size_in;
        public uint ctx_size_out;
        public uint retval;
        public int repeat;
        public uint duration;
        public uint flags;
        public uint cpu;
        public uint batch_size;
    }

    /// <summary>EbpfApi.dll exports (ebpfapi/Source.def). Results are 0 or -errno (MSVC numbers).</summary>
    public static class Native
    {
        // "EbpfApi" finds EbpfApi.dll on Windows and libEbpfApi.so under mono on Linux.
        const string Lib = "EbpfApi";

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_create(uint map_type, string map_name, uint key_size, uint value_size, uint max_entries, IntPtr opts);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_update_elem(int fd, byte[] key, byte[] value, ulong flags);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_lookup_elem(int fd, byte[] key, byte[] value);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_delete_elem(int fd, byte[] key);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_get_next_key(int fd, byte[] key, byte[] next_key);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map_get_next_id(uint start_id, out uint next_id);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_prog_get_next_id(uint start_id, out uint next_id);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_obj_pin(int fd, string pathname);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_obj_get(string pathname);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int ebpf_object_unpin(string path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr bpf_object__open(string path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_object__load(IntPtr obj);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern void bpf_object__close(IntPtr obj);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr bpf_object__find_program_by_name(IntPtr obj, string name);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr bpf_object__find_map_by_name(IntPtr obj, string name);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_program__fd(IntPtr prog);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_map__fd(IntPtr map);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int bpf_prog_test_run_opts(int prog_fd, ref BpfTestRunOpts opts);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int ebpf_close_fd(int fd);
    }

    /// <summary>MSVC errno values and how a failure is classified.</summary>
    public static class Errno
    {
        public const int EPERM = 1;
        public const int ENOENT = 2;
        public const int EBADF = 9;
        public const int EINVAL = 22;
        public const int ENOTSUP = 129;
        public const int EOTHER = 131;

        public static string Name(int e)
        {
            switch (e)
            {
                case EPERM: return "EPERM (run elevated)";
                case ENOENT: return "ENOENT";
                case EBADF: return "EBADF";
                case EINVAL: return "EINVAL";
                case ENOTSUP: return "ENOTSUP";
                case EOTHER: return "EOTHER";
                default: return "errno " + e.ToString(CultureInfo.InvariantCulture);
            }
        }
    }

    /// <summary>A usage error: exit code 2 with the message and the tool's usage.</summary>
    public class UsageException : Exception
    {
        public UsageException(string message) : base(message) { }
    }

    /// <summary>`--name value` / `--flag` arguments as hvlab renders them (a single `-` works too).</summary>
    public class Args
    {
        readonly Dictionary<string, string> values = new Dictionary<string, string>();
        readonly HashSet<string> flags = new HashSet<string>();
        public readonly List<string> Positional = new List<string>();

        public Args(string[] argv, string[] valueNames, string[] flagNames)
        {
            var known = new HashSet<string>(valueNames);
            var knownFlags = new HashSet<string>(flagNames);
            for (int i = 0; i < argv.Length; i++)
            {
                string a = argv[i];
                if (!a.StartsWith("-") || a == "-")
                {
                    Positional.Add(a);
                    continue;
                }
                string name = a.TrimStart('-');
                string inline = null;
                int eq = name.IndexOf('=');
                if (eq >= 0)
                {
                    inline = name.Substring(eq + 1);
                    name = name.Substring(0, eq);
                }
                if (knownFlags.Contains(name))
                {
                    if (inline != null && inline != "true" && inline != "false")
                        throw new UsageException("--" + name + " takes no value");
                    if (inline != "false") flags.Add(name);
                }
                else if (known.Contains(name))
                {
                    if (inline == null)
                    {
                        if (i + 1 >= argv.Length) throw new UsageException("--" + name + " needs a value");
                        inline = argv[++i];
                    }
                    values[name] = inline;
                }
                else
                {
                    throw new UsageException("unknown option " + a);
                }
            }
        }

        public bool Flag(string name) { return flags.Contains(name); }

        public string Get(string name, string fallback)
        {
            string v;
            return values.TryGetValue(name, out v) ? v : fallback;
        }

        public long Int(string name, long fallback, long min, long max)
        {
            string v;
            if (!values.TryGetValue(name, out v)) return fallback;
            long n;
            if (!long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out n))
                throw new UsageException("--" + name + ": `" + v + "` is not a whole number");
            if (n < min || n > max)
                throw new UsageException(string.Format(CultureInfo.InvariantCulture, "--{0} must be from {1} to {2}, got {3}", name, min, max, n));
            return n;
        }

        /// <summary>A duration: `250ms`, `3s`, `2m`, `1h`, or a bare number of milliseconds.</summary>
        public TimeSpan? Duration(string name, TimeSpan? fallback)
        {
            string v;
            if (!values.TryGetValue(name, out v)) return fallback;
            return ParseDuration(name, v);
        }

        public static TimeSpan ParseDuration(string name, string text)
        {
            string v = text.Trim();
            double scale = 1;
            string digits = v;
            if (v.EndsWith("ms")) { digits = v.Substring(0, v.Length - 2); }
            else if (v.EndsWith("s")) { digits = v.Substring(0, v.Length - 1); scale = 1000; }
            else if (v.EndsWith("m")) { digits = v.Substring(0, v.Length - 1); scale = 60000; }
            else if (v.EndsWith("h")) { digits = v.Substring(0, v.Length - 1); scale = 3600000; }
            double n;
            if (!double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out n) || n < 0)
                throw new UsageException("--" + name + ": `" + text + "` is not a duration (e.g. 250ms, 3s, 2m)");
            return TimeSpan.FromMilliseconds(n * scale);
        }
    }

    /// <summary>Keys and values as byte arrays of the map's sizes (little-endian numbers).</summary>
    public static class Bytes
    {
        public static byte[] Of(ulong n, int size)
        {
            var b = new byte[size];
            for (int i = 0; i < size && i < 8; i++) b[i] = (byte)(n >> (8 * i));
            return b;
        }

        public static ulong ToNumber(byte[] b)
        {
            ulong n = 0;
            for (int i = 0; i < b.Length && i < 8; i++) n |= ((ulong)b[i]) << (8 * i);
            return n;
        }
    }

    /// <summary>One JSON line of named numbers, in insertion order.</summary>
    public class JsonLine
    {
        readonly StringBuilder sb = new StringBuilder("{");

        public JsonLine Num(string name, long value)
        {
            Sep();
            sb.Append('"').Append(name).Append("\":").Append(value.ToString(CultureInfo.InvariantCulture));
            return this;
        }

        public JsonLine Str(string name, string value)
        {
            Sep();
            sb.Append('"').Append(name).Append("\":");
            if (value == null) { sb.Append("null"); return this; }
            sb.Append('"');
            foreach (char c in value)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c < ' ') sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                else sb.Append(c);
            }
            sb.Append('"');
            return this;
        }

        void Sep() { if (sb.Length > 1) sb.Append(','); }

        public override string ToString() { return sb.ToString() + "}"; }
    }

    /// <summary>Entry points; argv[0] of <see cref="Main"/> is the tool name (used by the tests).</summary>
    public static class Cli
    {
        public static int Main(string[] argv)
        {
            if (argv.Length == 0)
            {
                Console.Error.WriteLine("usage: <map_stress|map_tool|ebpf_stats|prog_invoke|layout> [options]");
                return 2;
            }
            var rest = new string[argv.Length - 1];
            Array.Copy(argv, 1, rest, 0, rest.Length);
            return Run(argv[0], rest);
        }

        public static int Run(string tool, string[] args)
        {
            try
            {
                switch (tool)
                {
                    case "map_stress": return MapStress.Run(args);
                    case "map_tool": return MapTool.Run(args);
                    case "ebpf_stats": return EbpfStats.Run(args);
                    case "prog_invoke": return ProgInvoke.Run(args);
                    case "layout": Console.WriteLine(Layout()); return 0;
                    default:
                        Console.Error.WriteLine("hvlab tools: unknown tool `" + tool + "`");
                        return 2;
                }
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine(tool + ": " + e.Message);
                return 2;
            }
            catch (DllNotFoundException e)
            {
                Console.Error.WriteLine(tool + ": failed to load EbpfApi: " + e.Message + " (is eBPF for Windows installed?)");
                return 1;
            }
        }

        /// <summary>Sizes and field offsets of the structs passed to EbpfApi, as one JSON line.</summary>
        public static string Layout()
        {
            var j = new JsonLine();
            j.Num("bpf_map_create_opts.size", Marshal.SizeOf(typeof(BpfMapCreateOpts)));
            foreach (var f in new[] { "sz", "btf_fd", "inner_map_fd", "map_flags", "map_extra", "numa_node", "map_ifindex" })
                j.Num("bpf_map_create_opts." + f, Marshal.OffsetOf(typeof(BpfMapCreateOpts), f).ToInt64());
            j.Num("bpf_test_run_opts.size", Marshal.SizeOf(typeof(BpfTestRunOpts)));
            foreach (var f in new[] { "sz", "data_in", "data_out", "data_size_in", "ctx_in", "ctx_out", "ctx_size_in", "retval", "repeat", "duration", "flags", "cpu", "batch_size" })
                j.Num("bpf_test_run_opts." + f, Marshal.OffsetOf(typeof(BpfTestRunOpts), f).ToInt64());
            return j.ToString();
        }
    }
}
