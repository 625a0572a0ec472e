using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Dicom;

/// <summary>
/// The shared DICOM files and what the training pipeline made of them (<c>../shared/data/dicom-reference</c>), and a
/// small editor of our own for explicit VR little endian files, so tests build multi-frame files, series, other
/// transfer syntaxes and hostile headers from real files without GDCM.
/// </summary>
public static class DicomTestFiles
{
    public static string PathOf(string name) => Paths.Data("dicom", name);

    public static byte[] Bytes(string name) => File.ReadAllBytes(PathOf(name));

    /// <summary>Every file of <c>data/dicom</c>.</summary>
    public static IEnumerable<string> All => Directory.GetFiles(Paths.Data("dicom"), "*.dcm").Select(Path.GetFileName).Order(StringComparer.Ordinal)!;

    /// <summary><c>index.json</c>: per file, its tensor's shape, statistics, modality and transfer syntax, or why it has none.</summary>
    public static JsonObject Index => (JsonObject)JsonNode.Parse(File.ReadAllText(Paths.Data("dicom-reference", "index.json")))!;

    /// <summary>The files the training pipeline decoded, each with its reference tensor.</summary>
    public static IEnumerable<string> WithReference => Index.Where(e => e.Value!["tensor"] is not null).Select(e => e.Key).Order(StringComparer.Ordinal);

    /// <summary>The training pipeline's tensor of <paramref name="name"/>: <c>[frames, 1, 64, 64]</c> float32.</summary>
    public static float[] Reference(string name) =>
        TestData.Floats("dicom-reference", Index[name]!["tensor"]!.GetValue<string>());

    public static long[] ReferenceShape(string name) => Index[name]!["shape"]!.AsArray().Select(v => v!.GetValue<long>()).ToArray();

    /// <summary>An element of a data set: tag, VR and value bytes; <paramref name="Undefined"/> for encapsulated pixel data (its items and delimiter as they are).</summary>
    public sealed record Element(ushort Group, ushort Number, string Vr, byte[] Value, bool Undefined = false)
    {
        public uint Tag => (uint)Group << 16 | Number;
    }

    /// <summary>An explicit VR little endian Part 10 file as its elements; lengths defined (a sequence stays opaque bytes) but for encapsulated pixel data.</summary>
    public sealed class Editor
    {
        private static readonly HashSet<string> LongVrs = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"];

        public List<Element> Meta { get; } = [];
        public List<Element> DataSet { get; } = [];

        public static Editor Open(string name) => Parse(Bytes(name));

        public static Editor Parse(byte[] file)
        {
            var editor = new Editor();
            var pos = 132;
            while (pos + 8 <= file.Length)
            {
                var group = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(pos));
                var number = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(pos + 2));
                var vr = Encoding.ASCII.GetString(file, pos + 4, 2);
                int header;
                uint length;
                if (LongVrs.Contains(vr))
                {
                    length = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos + 8));
                    header = 12;
                }
                else
                {
                    length = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(pos + 6));
                    header = 8;
                }
                if (length == uint.MaxValue)
                {
                    if (group != 0x7FE0 || number != 0x0010)
                    {
                        throw new NotSupportedException("the test editor reads undefined lengths only in encapsulated pixel data");
                    }
                    // Fragments up to and with the sequence delimiter (FFFE,E0DD), kept as bytes.
                    var end = pos + header;
                    while (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(end)) != 0xE0DDFFFE)
                    {
                        end += 8 + (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(end + 4));
                    }
                    end += 8;
                    editor.DataSet.Add(new Element(group, number, vr, file.AsSpan(pos + header, end - pos - header).ToArray(), Undefined: true));
                    pos = end;
                    continue;
                }
                var element = new Element(group, number, vr, file.AsSpan(pos + header, (int)length).ToArray());
                (group == 2 ? editor.Meta : editor.DataSet).Add(element);
                pos += header + (int)length;
            }
            return editor;
        }

        public Element? Get(ushort group, ushort number) => (group == 2 ? Meta : DataSet).FirstOrDefault(e => e.Group == group && e.Number == number);

        public string? Text(ushort group, ushort number) => Get(group, number) is { } e ? Encoding.ASCII.GetString(e.Value).Trim(' ', '\0') : null;

        /// <summary>Sets an element (replacing or inserting it in tag order).</summary>
        public Editor Set(ushort group, ushort number, string vr, byte[] value)
        {
            var list = group == 2 ? Meta : DataSet;
            list.RemoveAll(e => e.Group == group && e.Number == number);
            var element = new Element(group, number, vr, value);
            var at = list.FindIndex(e => e.Tag > element.Tag);
            list.Insert(at < 0 ? list.Count : at, element);
            return this;
        }

        /// <summary>Sets a text element, padded to even length (UI with NUL, others with a space).</summary>
        public Editor Set(ushort group, ushort number, string vr, string value)
        {
            var bytes = Encoding.ASCII.GetBytes(value);
            if (bytes.Length % 2 == 1)
            {
                bytes = [.. bytes, vr == "UI" ? (byte)0 : (byte)' '];
            }
            return Set(group, number, vr, bytes);
        }

        public Editor SetUs(ushort group, ushort number, ushort value)
        {
            var bytes = new byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(bytes, value);
            return Set(group, number, "US", bytes);
        }

        public Editor Remove(ushort group, ushort number)
        {
            (group == 2 ? Meta : DataSet).RemoveAll(e => e.Group == group && e.Number == number);
            return this;
        }

        public Editor Clone()
        {
            var copy = new Editor();
            copy.Meta.AddRange(Meta);
            copy.DataSet.AddRange(DataSet);
            return copy;
        }

        /// <summary>The Pixel Data as 16-bit signed samples (the small MR and CT files).</summary>
        public short[] PixelsInt16 => MemoryMarshal.Cast<byte, short>(Get(0x7FE0, 0x0010)!.Value.AsSpan()).ToArray();

        public Editor SetPixelsInt16(short[] pixels) => Set(0x7FE0, 0x0010, "OW", MemoryMarshal.AsBytes(pixels.AsSpan()).ToArray());

        /// <summary>Writes the file: preamble, "DICM", meta (group length recomputed), data set, deflated when the transfer syntax says so.</summary>
        public byte[] Write(string? transferSyntax = null)
        {
            if (transferSyntax is not null)
            {
                Set(0x0002, 0x0010, "UI", transferSyntax);
            }
            var meta = Encode(Meta.Where(e => e.Number != 0x0000));
            var groupLength = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(groupLength, (uint)meta.Length);
            var data = Encode(DataSet);
            if (Text(0x0002, 0x0010) == "1.2.840.10008.1.2.1.99")
            {
                using var deflated = new MemoryStream();
                using (var deflate = new DeflateStream(deflated, CompressionLevel.Optimal, leaveOpen: true))
                {
                    deflate.Write(data);
                }
                data = deflated.ToArray();
                if (data.Length % 2 == 1)
                {
                    data = [.. data, 0];
                }
            }
            return [.. new byte[128], .. "DICM"u8, .. Encode([new Element(2, 0, "UL", groupLength)]), .. meta, .. data];
        }

        private static byte[] Encode(IEnumerable<Element> elements)
        {
            using var stream = new MemoryStream();
            Span<byte> head = stackalloc byte[12];
            foreach (var e in elements)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(head, e.Group);
                BinaryPrimitives.WriteUInt16LittleEndian(head[2..], e.Number);
                Encoding.ASCII.GetBytes(e.Vr, head[4..]);
                if (LongVrs.Contains(e.Vr))
                {
                    head[6] = head[7] = 0;
                    BinaryPrimitives.WriteUInt32LittleEndian(head[8..], e.Undefined ? uint.MaxValue : (uint)e.Value.Length);
                    stream.Write(head);
                }
                else
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(head[6..], (ushort)e.Value.Length);
                    stream.Write(head[..8]);
                }
                stream.Write(e.Value);
            }
            return stream.ToArray();
        }
    }

    /// <summary>MR_small.dcm as three frames: the slice, the slice + 10, the slice + 20 (so the rows' order shows).</summary>
    public static byte[] MultiFrameMr(int frames = 3)
    {
        var editor = Editor.Open("MR_small.dcm");
        var pixels = editor.PixelsInt16;
        var all = new short[pixels.Length * frames];
        for (var f = 0; f < frames; f++)
        {
            for (var i = 0; i < pixels.Length; i++)
            {
                all[f * pixels.Length + i] = (short)(pixels[i] + 10 * f);
            }
        }
        return editor.Set(0x0028, 0x0008, "IS", frames.ToString(System.Globalization.CultureInfo.InvariantCulture)).SetPixelsInt16(all).Write();
    }

    /// <summary>MR_small.dcm with its pixels raised by <paramref name="offset"/>, and the Instance Number and slice position given.</summary>
    public static byte[] MrSlice(int offset, int? instance, double? z = null)
    {
        var editor = Editor.Open("MR_small.dcm");
        editor.SetPixelsInt16(editor.PixelsInt16.Select(p => (short)(p + offset)).ToArray());
        if (instance is { } n)
        {
            editor.Set(0x0020, 0x0013, "IS", n.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        else
        {
            editor.Remove(0x0020, 0x0013);
        }
        if (z is { } position)
        {
            editor.Set(0x0020, 0x0032, "DS", $"0\\0\\{position.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
            editor.Set(0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0");
        }
        return editor.Write();
    }

    /// <summary>The reference tensor plus a constant (the resize's weights sum to 1, so an offset passes through).</summary>
    public static float[] Plus(float[] tensor, float offset) => tensor.Select(v => v + offset).ToArray();
}
