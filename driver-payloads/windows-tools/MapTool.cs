// map_tool and ebpf_stats for real Windows guests (C# 5; see HvlabEbpf.cs).
//
// map_tool does single map operations; a pinned map belongs to ebpfcore and outlives the
// tool, which is how a scenario keeps maps alive across an extension stop. ebpf_stats prints
// object counts and, on Windows, the pool bytes of the tags asked for (one JSON line).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Hvlab
{
    public static class MapTool
    {
        public const string Usage = "usage: map_tool <create|update|fill|delete|list> [--name N] [--type sample|hash] [--type-id N] " +
            "[--key-size N] [--value-size N] [--max-entries N] [--pin] [--key K] [--value V] [--count C] [--pin-root P]";

        static int Failed(string what, int rc)
        {
            Console.Error.WriteLine("map_tool: failed to " + what + ": " + Errno.Name(-rc));
            return 1;
        }

        public static int Run(string[] argv)
        {
            Args a;
            try
            {
                a = new Args(argv,
                    new[] { "name", "type", "type-id", "key-size", "value-size", "max-entries", "key", "value", "count", "pin-root" },
                    new[] { "pin" });
                if (a.Positional.Count != 1) throw new UsageException("expected exactly one command");
            }
            catch (UsageException e) { throw new UsageException(e.Message + "\n" + Usage); }
            string cmd = a.Positional[0];
            string name = a.Get("name", null);
            string path = a.Get("pin-root", "/hvlab/") + name;
            uint keySize = (uint)a.Int("key-size", 4, 1, 1024);
            uint valueSize = (uint)a.Int("value-size", 4, 1, 65536);
            if (cmd != "list" && name == null) throw new UsageException(cmd + " needs --name\n" + Usage);
            switch (cmd)
            {
                case "create":
                    {
                        string type = a.Get("type", "sample");
                        uint typeId = type == "sample" ? 15u : type == "hash" ? 1u : 0u;
                        if (typeId == 0) throw new UsageException("--type: unknown type `" + type + "` (sample, hash; or --type-id N)");
                        typeId = (uint)a.Int("type-id", typeId, 1, uint.MaxValue);
                        uint max = (uint)a.Int("max-entries", 128, 1, uint.MaxValue);
                        int fd = Native.bpf_map_create(typeId, name, keySize, valueSize, max, IntPtr.Zero);
                        if (fd < 0) return Failed("create map " + name, fd);
                        bool pin = a.Flag("pin");
                        int rc = pin ? Native.bpf_obj_pin(fd, path) : 0;
                        Native.ebpf_close_fd(fd);
                        if (rc != 0) return Failed("pin map " + name + " at " + path, rc);
                        Console.WriteLine(new JsonLine().Str("name", name).Num("type", typeId).Num("max_entries", max)
                            .Str("pinned", pin ? path : null).ToString());
                        return 0;
                    }
                case "update":
                case "fill":
                    {
                        int fd = Native.bpf_obj_get(path);
                        if (fd < 0) return Failed("open pinned map " + path, fd < -1 ? fd : -Errno.ENOENT);
                        try
                        {
                            if (cmd == "fill")
                            {
                                long count = a.Int("count", 1, 1, 1000000);
                                for (long i = 0; i < count; i++)
                                {
                                    int rc = Native.bpf_map_update_elem(fd, Bytes.Of((ulong)i, (int)keySize), Bytes.Of((ulong)i, (int)valueSize), 0);
                                    if (rc != 0) return Failed("fill map " + name + " (key " + i.ToString(CultureInfo.InvariantCulture) + ")", rc);
                                }
                                Console.WriteLine(new JsonLine().Str("name", name).Num("filled", count).ToString());
                                return 0;
                            }
                            long key = a.Int("key", 0, 0, uint.MaxValue);
                            byte[] kb = Bytes.Of((ulong)key, (int)keySize);
                            string given = a.Get("value", null);
                            if (given != null)
                            {
                                long v = a.Int("value", 0, 0, uint.MaxValue);
                                int rc = Native.bpf_map_update_elem(fd, kb, Bytes.Of((ulong)v, (int)valueSize), 0);
                                if (rc != 0) return Failed("update key " + key.ToString(CultureInfo.InvariantCulture) + " of map " + name, rc);
                                Console.WriteLine(new JsonLine().Str("name", name).Num("key", key).Num("value", v).ToString());
                                return 0;
                            }
                            var vb = new byte[valueSize];
                            int r = Native.bpf_map_lookup_elem(fd, kb, vb);
                            if (r != 0) return Failed("find key " + key.ToString(CultureInfo.InvariantCulture) + " in map " + name, r);
                            Console.WriteLine(new JsonLine().Str("name", name).Num("key", key).Num("value", (long)Bytes.ToNumber(vb)).ToString());
                            return 0;
                        }
                        finally
                        {
                            Native.ebpf_close_fd(fd);
                        }
                    }
                case "delete":
                    {
                        // Unpinning drops the pin's reference: the map is deleted once no handle holds it.
                        int rc = Native.ebpf_object_unpin(path);
                        if (rc != 0) return Failed("unpin map " + path, rc > 0 ? -Errno.EOTHER : rc);
                        Console.WriteLine(new JsonLine().Str("deleted", name).ToString());
                        return 0;
                    }
                case "list":
                    Console.WriteLine(new JsonLine().Num("maps", EbpfStats.Count(true)).ToString());
                    return 0;
                default:
                    throw new UsageException("unknown command `" + cmd + "`\n" + Usage);
            }
        }
    }

    public static class EbpfStats
    {
        /// <summary>Number of maps (or programs) ebpfcore reports, walking the ids.</summary>
        public static long Count(bool maps)
        {
            uint id = 0, next;
            long n = 0;
            while ((maps ? Native.bpf_map_get_next_id(id, out next) : Native.bpf_prog_get_next_id(id, out next)) == 0)
            {
                n++;
                id = next;
            }
            return n;
        }

        // SystemPoolTagInformation (22): ULONG Count, then SYSTEM_POOLTAG entries of 40 bytes
        // on x64 (Tag[4], PagedAllocs, PagedFrees, PagedUsed (SIZE_T @16), NonPagedAllocs,
        // NonPagedFrees, NonPagedUsed (SIZE_T @32)), starting at offset 8.
        [DllImport("ntdll.dll")]
        static extern int NtQuerySystemInformation(int infoClass, IntPtr info, int length, out int returned);

        static Dictionary<string, long> PoolBytes(string[] tags)
        {
            int size = 1 << 20;
            for (int attempt = 0; attempt < 4; attempt++, size *= 4)
            {
                IntPtr buf = Marshal.AllocHGlobal(size);
                try
                {
                    int got;
                    int status = NtQuerySystemInformation(22, buf, size, out got);
                    if (status == unchecked((int)0xC0000004)) continue; // STATUS_INFO_LENGTH_MISMATCH
                    if (status != 0) return null;
                    int count = Marshal.ReadInt32(buf);
                    var result = new Dictionary<string, long>();
                    foreach (string t in tags) result[t] = 0;
                    for (int i = 0; i < count; i++)
                    {
                        IntPtr e = new IntPtr(buf.ToInt64() + 8 + 40L * i);
                        var tagBytes = new byte[4];
                        Marshal.Copy(e, tagBytes, 0, 4);
                        string tag = System.Text.Encoding.ASCII.GetString(tagBytes).TrimEnd(' ', '\0');
                        if (result.ContainsKey(tag))
                            result[tag] += Marshal.ReadInt64(e, 16) + Marshal.ReadInt64(e, 32);
                    }
                    return result;
                }
                finally
                {
                    Marshal.FreeHGlobal(buf);
                }
            }
            return null;
        }

        public static int Run(string[] argv)
        {
            var a = new Args(argv, new[] { "tags" }, new string[0]);
            var line = new JsonLine().Num("maps", Count(true)).Num("programs", Count(false));
            string[] tags = a.Get("tags", "Smpl").Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries);
            Dictionary<string, long> pool = null;
            try { pool = PoolBytes(tags); }
            catch (DllNotFoundException) { }
            catch (EntryPointNotFoundException) { }
            if (pool == null) Console.Error.WriteLine("ebpf_stats: pool tag information is not available here");
            else foreach (string t in tags) line.Num("pool_bytes:" + t, pool[t]);
            Console.WriteLine(line.ToString());
            return 0;
        }
    }
}
