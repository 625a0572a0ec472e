using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace MedServe.Medical.Dicom;

/// <summary>
/// Reads a DICOM Part 10 file in managed code and checks its whole structure before any native decoder sees it: the
/// preamble and "DICM", the file meta information, then every element of the data set (nested sequences and items,
/// encapsulated fragments) lies inside the file, with a valid VR and consistent lengths. Returns the attributes decoding
/// needs (<see cref="DicomHeader"/>). Errors (400, 413, 415) name tags, VRs, lengths and transfer syntaxes, never values.
/// </summary>
public static class DicomParser
{
    private const int MaxDepth = 16;

    private static readonly HashSet<string> LongVrs = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"];

    private static readonly HashSet<string> ShortVrs = ["AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"];

    // Top-level attributes read into the header, by tag (group << 16 | element).
    private const uint Modality = 0x00080060, SeriesInstanceUid = 0x0020000E, InstanceNumber = 0x00200013,
        ImagePosition = 0x00200032, ImageOrientation = 0x00200037, SamplesPerPixel = 0x00280002, Photometric = 0x00280004,
        PlanarConfiguration = 0x00280006, NumberOfFrames = 0x00280008, Rows = 0x00280010, Columns = 0x00280011,
        BitsAllocated = 0x00280100, BitsStored = 0x00280101, HighBit = 0x00280102, PixelRepresentation = 0x00280103,
        RescaleIntercept = 0x00281052, RescaleSlope = 0x00281053, ModalityLut = 0x00283000, SharedGroups = 0x52009229,
        PerFrameGroups = 0x52009230, FloatPixelData = 0x7FE00008, DoubleFloatPixelData = 0x7FE00009, PixelData = 0x7FE00010,
        SopClassUid = 0x00080016, SopInstanceUid = 0x00080018, StudyInstanceUid = 0x0020000D, BodyPartExamined = 0x00180015,
        SeriesDescription = 0x0008103E;

    private static readonly HashSet<uint> Wanted =
    [
        Modality, SeriesInstanceUid, InstanceNumber, ImagePosition, ImageOrientation, SamplesPerPixel, Photometric,
        PlanarConfiguration, NumberOfFrames, Rows, Columns, BitsAllocated, BitsStored, HighBit, PixelRepresentation,
        RescaleIntercept, RescaleSlope, ModalityLut, SharedGroups, PerFrameGroups, FloatPixelData, DoubleFloatPixelData,
        SopClassUid, SopInstanceUid, StudyInstanceUid, BodyPartExamined, SeriesDescription,
    ];

    /// <summary>
    /// Parses and checks <paramref name="file"/>; <paramref name="maxPixelBytes"/> caps the decoded pixel data its header
    /// may declare (and a deflated data set's inflated size), as 413.
    /// </summary>
    public static DicomHeader Parse(ReadOnlyMemory<byte> file, long maxPixelBytes) => Walk(file, maxPixelBytes).Header(maxPixelBytes);

    /// <summary>
    /// Checks the structure of any Part 10 file, image or not (preamble, meta information, a transfer syntax MedServe
    /// decodes, every element inside the file), as <see cref="Parse"/> does before it reads the image attributes.
    /// </summary>
    public static TransferSyntax CheckStructure(ReadOnlyMemory<byte> file, long maxInflatedBytes) => Walk(file, maxInflatedBytes).Syntax;

    private static Walker Walk(ReadOnlyMemory<byte> file, long maxPixelBytes)
    {
        var bytes = file.Span;
        if (bytes.Length < 132 || !bytes.Slice(128, 4).SequenceEqual("DICM"u8))
        {
            throw MedServeException.Invalid(bytes.Length == 0
                ? "the DICOM body is empty"
                : "not a DICOM Part 10 file: no 'DICM' after the 128-byte preamble", "dicom");
        }
        var (uid, dataStart) = ReadMeta(bytes);
        var syntax = TransferSyntaxes.Require(uid);

        var walker = new Walker(syntax);
        if (syntax.Deflated)
        {
            var inflated = Inflate(file[dataStart..], maxPixelBytes);
            walker.Walk(inflated);
        }
        else
        {
            walker.Walk(file[dataStart..]);
        }
        return walker;
    }

    private static (string Uid, int DataStart) ReadMeta(ReadOnlySpan<byte> bytes)
    {
        var pos = 132;
        string? uid = null;
        while (pos + 4 <= bytes.Length && BinaryPrimitives.ReadUInt16LittleEndian(bytes[pos..]) == 0x0002)
        {
            var element = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(pos + 2)..]);
            if (pos + 8 > bytes.Length)
            {
                throw Truncated($"the file ends inside the file meta information element {Tag(0x0002, element)}");
            }
            var vr = Encoding.ASCII.GetString(bytes.Slice(pos + 4, 2));
            int header;
            long length;
            if (LongVrs.Contains(vr))
            {
                if (pos + 12 > bytes.Length)
                {
                    throw Truncated($"the file ends inside the file meta information element {Tag(0x0002, element)}");
                }
                length = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(pos + 8)..]);
                header = 12;
            }
            else if (ShortVrs.Contains(vr))
            {
                length = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(pos + 6)..]);
                header = 8;
            }
            else
            {
                throw MedServeException.Invalid($"file meta information element {Tag(0x0002, element)} has an invalid VR (the meta information is always explicit VR little endian)", Tag(0x0002, element));
            }
            if (length == 0xFFFFFFFF || pos + header + length > bytes.Length)
            {
                throw Truncated($"file meta information element {Tag(0x0002, element)} declares {Len(length)} bytes but only {bytes.Length - pos - header} remain");
            }
            if (element == 0x0010)
            {
                uid = Text(bytes.Slice(pos + header, (int)length));
            }
            pos += header + (int)length;
        }
        if (uid is null || uid.Length == 0)
        {
            throw MedServeException.Invalid("the file meta information has no Transfer Syntax UID (0002,0010)", "(0002,0010)");
        }
        return (uid, pos);
    }

    private static ReadOnlyMemory<byte> Inflate(ReadOnlyMemory<byte> deflated, long maxPixelBytes)
    {
        // Raw deflate (RFC 1951), as PS3.5 A.5 says. A deflate bomb stops at the cap: 413.
        var cap = maxPixelBytes + 16L * 1024 * 1024;
        using var input = new MemoryStream(deflated.ToArray(), writable: false);
        using var inflater = new DeflateStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream();
        var chunk = new byte[81920];
        try
        {
            int read;
            while ((read = inflater.Read(chunk)) > 0)
            {
                if (output.Length + read > cap)
                {
                    throw new MedServeException(ErrorKind.TooLarge, $"the deflated data set inflates to more than {cap} bytes (MedServe:Limits:MaxDicomPixelBytes plus 16 MiB)", "dicom");
                }
                output.Write(chunk, 0, read);
            }
        }
        catch (InvalidDataException)
        {
            throw MedServeException.Invalid("the deflated data set (Deflated Explicit VR Little Endian) is not valid deflate data", "dicom");
        }
        return output.ToArray();
    }

    /// <summary>Walks a data set, checking every element's bounds, and keeps the top-level attributes it wants.</summary>
    private sealed class Walker(TransferSyntax syntax)
    {
        private readonly Dictionary<uint, ReadOnlyMemory<byte>> _values = [];
        private readonly HashSet<uint> _present = [];
        private ReadOnlyMemory<byte> _data;
        private long _pixelLength;
        private bool _pixelFound;
        private bool _encapsulated;
        private int _fragments;

        public TransferSyntax Syntax => syntax;

        private bool BigEndian => syntax.BigEndian;

        private ushort U16(int pos, bool bigEndian) => bigEndian
            ? BinaryPrimitives.ReadUInt16BigEndian(_data.Span[pos..])
            : BinaryPrimitives.ReadUInt16LittleEndian(_data.Span[pos..]);

        private uint U32(int pos, bool bigEndian) => bigEndian
            ? BinaryPrimitives.ReadUInt32BigEndian(_data.Span[pos..])
            : BinaryPrimitives.ReadUInt32LittleEndian(_data.Span[pos..]);

        public void Walk(ReadOnlyMemory<byte> data)
        {
            _data = data;
            Elements(0, data.Length, depth: 0, untilItemEnd: false, syntax.Implicit, BigEndian);
        }

        /// <summary>Reads elements from <paramref name="pos"/> to <paramref name="end"/>, or up to an item delimiter; returns the position after them.</summary>
        private int Elements(int pos, int end, int depth, bool untilItemEnd, bool implicitVr, bool bigEndian)
        {
            if (depth > MaxDepth)
            {
                throw MedServeException.Invalid($"sequences are nested more than {MaxDepth} deep", "dicom");
            }
            while (pos < end)
            {
                if (pos + 8 > end)
                {
                    throw Truncated(depth == 0 ? "the file ends inside an element header" : "an item ends inside an element header");
                }
                var group = U16(pos, bigEndian);
                var element = U16(pos + 2, bigEndian);
                var tag = (uint)group << 16 | element;
                if (group == 0xFFFE)
                {
                    if (element == 0xE00D && untilItemEnd)
                    {
                        return pos + 8;
                    }
                    throw MedServeException.Invalid($"unexpected {Tag(group, element)} where a data element belongs", Tag(group, element));
                }
                string? vr = null;
                int header;
                long length;
                if (implicitVr)
                {
                    length = U32(pos + 4, bigEndian);
                    header = 8;
                }
                else
                {
                    vr = Encoding.ASCII.GetString(_data.Span.Slice(pos + 4, 2));
                    if (LongVrs.Contains(vr))
                    {
                        if (pos + 12 > end)
                        {
                            throw Truncated($"the file ends inside the header of {Tag(group, element)}");
                        }
                        length = U32(pos + 8, bigEndian);
                        header = 12;
                    }
                    else if (ShortVrs.Contains(vr))
                    {
                        length = U16(pos + 6, bigEndian);
                        header = 8;
                    }
                    else
                    {
                        throw MedServeException.Invalid($"element {Tag(group, element)} has an invalid VR", Tag(group, element));
                    }
                }
                var start = pos + header;
                if (length == 0xFFFFFFFF)
                {
                    if (depth == 0 && tag == PixelData)
                    {
                        if (!syntax.Encapsulated)
                        {
                            throw MedServeException.Invalid($"Pixel Data (7FE0,0010) has an undefined length (encapsulated) but the transfer syntax {syntax.Name} is not compressed", "(7FE0,0010)");
                        }
                        pos = Fragments(start, end, bigEndian);
                        continue;
                    }
                    if (vr is not (null or "SQ" or "UN"))
                    {
                        throw MedServeException.Invalid($"element {Tag(group, element)} has an undefined length but VR {vr}", Tag(group, element));
                    }
                    if (depth == 0)
                    {
                        _present.Add(tag);
                    }
                    // A UN of undefined length holds an implicit VR little endian sequence (PS3.5 6.2.2).
                    pos = Items(start, end, depth, defined: false, Tag(group, element), vr == "UN" || implicitVr, vr == "UN" ? false : bigEndian);
                    continue;
                }
                if (length > end - start)
                {
                    throw Truncated($"{Name(tag)} declares {length} bytes but only {end - start} remain");
                }
                var valueEnd = start + (int)length;
                if (vr == "SQ")
                {
                    Items(start, valueEnd, depth, defined: true, Tag(group, element), implicitVr, bigEndian);
                }
                if (depth == 0)
                {
                    _present.Add(tag);
                    if (tag == PixelData)
                    {
                        if (syntax.Encapsulated)
                        {
                            throw MedServeException.Invalid($"Pixel Data (7FE0,0010) has a defined length but the transfer syntax {syntax.Name} keeps pixel data in fragments", "(7FE0,0010)");
                        }
                        _pixelFound = true;
                        _pixelLength = length;
                    }
                    else if (Wanted.Contains(tag))
                    {
                        _values[tag] = _data.Slice(start, (int)length);
                    }
                }
                pos = valueEnd;
            }
            if (untilItemEnd)
            {
                throw Truncated("a sequence item has no Item Delimitation Item (FFFE,E00D) before its end");
            }
            return pos;
        }

        /// <summary>Reads the items of a sequence; returns the position after it.</summary>
        private int Items(int pos, int end, int depth, bool defined, string sequence, bool implicitVr, bool bigEndian)
        {
            while (true)
            {
                if (defined && pos == end)
                {
                    return pos;
                }
                if (pos + 8 > end)
                {
                    throw Truncated($"sequence {sequence} ends inside an item header");
                }
                var group = U16(pos, bigEndian);
                var element = U16(pos + 2, bigEndian);
                var length = U32(pos + 4, bigEndian);
                if (group == 0xFFFE && element == 0xE0DD && !defined)
                {
                    return pos + 8;
                }
                if (group != 0xFFFE || element != 0xE000)
                {
                    throw MedServeException.Invalid($"sequence {sequence} holds {Tag(group, element)} where an item (FFFE,E000) belongs", sequence);
                }
                if (length == 0xFFFFFFFF)
                {
                    pos = Elements(pos + 8, end, depth + 1, untilItemEnd: true, implicitVr, bigEndian);
                }
                else
                {
                    if (length > end - pos - 8)
                    {
                        throw Truncated($"an item of sequence {sequence} declares {length} bytes but only {end - pos - 8} remain");
                    }
                    Elements(pos + 8, pos + 8 + (int)length, depth + 1, untilItemEnd: false, implicitVr, bigEndian);
                    pos += 8 + (int)length;
                }
            }
        }

        /// <summary>Reads encapsulated pixel data: a basic offset table item, fragment items, a sequence delimiter.</summary>
        private int Fragments(int pos, int end, bool bigEndian)
        {
            var items = 0;
            long total = 0;
            while (true)
            {
                if (pos + 8 > end)
                {
                    throw Truncated("the encapsulated Pixel Data (7FE0,0010) ends before its Sequence Delimitation Item (FFFE,E0DD): the file is truncated");
                }
                var group = U16(pos, bigEndian);
                var element = U16(pos + 2, bigEndian);
                var length = U32(pos + 4, bigEndian);
                if (group == 0xFFFE && element == 0xE0DD)
                {
                    break;
                }
                if (group != 0xFFFE || element != 0xE000 || length == 0xFFFFFFFF)
                {
                    throw MedServeException.Invalid($"the encapsulated Pixel Data (7FE0,0010) holds {Tag(group, element)}{(length == 0xFFFFFFFF ? " of undefined length" : "")} where a fragment item belongs", "(7FE0,0010)");
                }
                if (length > end - pos - 8)
                {
                    throw Truncated($"a fragment of Pixel Data (7FE0,0010) declares {length} bytes but only {end - pos - 8} remain");
                }
                if (items > 0)
                {
                    total += length;
                }
                items++;
                pos += 8 + (int)length;
            }
            if (items < 2 || total == 0)
            {
                throw MedServeException.Invalid("the encapsulated Pixel Data (7FE0,0010) holds no compressed fragment", "(7FE0,0010)");
            }
            _pixelFound = true;
            _encapsulated = true;
            _pixelLength = total;
            _fragments = items - 1;
            return pos + 8;
        }

        public DicomHeader Header(long maxPixelBytes)
        {
            if (_present.Contains(FloatPixelData) || _present.Contains(DoubleFloatPixelData))
            {
                throw MedServeException.Invalid("Float Pixel Data (7FE0,0008) and Double Float Pixel Data (7FE0,0009) are not supported", "(7FE0,0008)");
            }
            if (!_pixelFound)
            {
                throw MedServeException.Invalid("the file has no Pixel Data (7FE0,0010): it is not an image", "(7FE0,0010)");
            }
            var rows = RequiredUs(Rows, "Rows");
            var columns = RequiredUs(Columns, "Columns");
            var samples = RequiredUs(SamplesPerPixel, "Samples per Pixel");
            var allocated = RequiredUs(BitsAllocated, "Bits Allocated");
            var stored = RequiredUs(BitsStored, "Bits Stored");
            var highBit = Us(HighBit, "High Bit") ?? stored - 1;
            var representation = RequiredUs(PixelRepresentation, "Pixel Representation");
            var planar = Us(PlanarConfiguration, "Planar Configuration") ?? 0;
            var photometric = Str(Photometric) ?? throw Missing(Photometric, "Photometric Interpretation");
            var frames = 1;
            if (_values.TryGetValue(NumberOfFrames, out var framesValue))
            {
                var text = Text(framesValue.Span);
                frames = text.Length == 0 ? 1
                    : int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n
                    : throw MedServeException.Invalid("Number of Frames (0028,0008) is not an integer string (IS)", "(0028,0008)");
            }

            if (rows < 1 || columns < 1)
            {
                throw MedServeException.Invalid("Rows (0028,0010) and Columns (0028,0011) must be at least 1", "(0028,0010)");
            }
            if (frames < 1)
            {
                throw MedServeException.Invalid("Number of Frames (0028,0008) must be at least 1", "(0028,0008)");
            }
            if (allocated is not (8 or 16 or 32))
            {
                throw MedServeException.Invalid($"Bits Allocated (0028,0100) is {allocated}; only 8, 16 and 32 are supported", "(0028,0100)");
            }
            if (stored < 1 || stored > allocated || highBit >= allocated || highBit < stored - 1)
            {
                throw MedServeException.Invalid($"Bits Stored (0028,0101) {stored} and High Bit (0028,0102) {highBit} do not fit Bits Allocated (0028,0100) {allocated}", "(0028,0101)");
            }
            if (representation is not (0 or 1))
            {
                throw MedServeException.Invalid("Pixel Representation (0028,0103) must be 0 or 1", "(0028,0103)");
            }
            if (samples is not (1 or 3))
            {
                throw MedServeException.Invalid($"Samples per Pixel (0028,0002) is {samples}; only 1 (grey) and 3 (colour) are supported", "(0028,0002)");
            }
            if (planar is not (0 or 1))
            {
                throw MedServeException.Invalid("Planar Configuration (0028,0006) must be 0 or 1", "(0028,0006)");
            }
            var expectedSamples = photometric switch
            {
                "MONOCHROME1" or "MONOCHROME2" => 1,
                "RGB" or "YBR_FULL" or "YBR_FULL_422" or "YBR_ICT" or "YBR_RCT" => 3,
                _ => 0,
            };
            if (expectedSamples == 0)
            {
                throw MedServeException.Invalid(
                    $"Photometric Interpretation (0028,0004) {(photometric is "PALETTE COLOR" or "YBR_PARTIAL_422" or "YBR_PARTIAL_420" or "HSV" or "ARGB" or "CMYK" ? photometric : "of this file")} is not supported (MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, or YBR_FULL_422/YBR_ICT/YBR_RCT when compressed)",
                    "(0028,0004)");
            }
            if (expectedSamples != samples)
            {
                throw MedServeException.Invalid($"Photometric Interpretation (0028,0004) {photometric} needs {expectedSamples} sample(s) per pixel but Samples per Pixel (0028,0002) is {samples}", "(0028,0002)");
            }
            if (!syntax.Encapsulated && photometric is "YBR_FULL_422" or "YBR_ICT" or "YBR_RCT")
            {
                throw MedServeException.Invalid($"Photometric Interpretation (0028,0004) {photometric} is supported only in compressed transfer syntaxes", "(0028,0004)");
            }

            var header = new DicomHeader
            {
                TransferSyntax = syntax,
                Modality = Str(Modality),
                Rows = rows,
                Columns = columns,
                Frames = frames,
                SamplesPerPixel = samples,
                BitsAllocated = allocated,
                BitsStored = stored,
                HighBit = highBit,
                PixelRepresentation = representation,
                PlanarConfiguration = planar,
                Photometric = photometric,
                RescaleSlope = Ds(RescaleSlope, "Rescale Slope"),
                RescaleIntercept = Ds(RescaleIntercept, "Rescale Intercept"),
                HasModalityLutSequence = _present.Contains(ModalityLut),
                HasFunctionalGroups = _present.Contains(SharedGroups) || _present.Contains(PerFrameGroups),
                InstanceNumber = _values.TryGetValue(InstanceNumber, out var instance)
                    && int.TryParse(Text(instance.Span), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) ? number : null,
                ImagePositionPatient = Doubles(ImagePosition, 3),
                ImageOrientationPatient = Doubles(ImageOrientation, 6),
                SeriesInstanceUid = Str(SeriesInstanceUid),
                StudyInstanceUid = Str(StudyInstanceUid),
                SopInstanceUid = Str(SopInstanceUid),
                SopClassUid = Str(SopClassUid),
                BodyPartExamined = Str(BodyPartExamined),
                SeriesDescription = Str(SeriesDescription),
                PixelDataLength = _pixelLength,
                Encapsulated = _encapsulated,
            };
            if (header.DecodedBytes > maxPixelBytes)
            {
                throw new MedServeException(ErrorKind.TooLarge,
                    $"the image declares {header.DecodedBytes} bytes of pixel data (Rows x Columns x Number of Frames x Samples per Pixel x Bits Allocated / 8); the limit is {maxPixelBytes} (MedServe:Limits:MaxDicomPixelBytes)", "(7FE0,0010)");
            }
            if (!_encapsulated && _pixelLength < header.DecodedBytes)
            {
                throw MedServeException.Invalid(
                    $"Pixel Data (7FE0,0010) holds {_pixelLength} bytes but Rows x Columns x Number of Frames x Samples per Pixel x Bits Allocated / 8 is {header.DecodedBytes}", "(7FE0,0010)");
            }
            if (_encapsulated && _fragments < 1)
            {
                throw MedServeException.Invalid("the encapsulated Pixel Data (7FE0,0010) holds no fragment", "(7FE0,0010)");
            }
            return header;
        }

        private int RequiredUs(uint tag, string name) => Us(tag, name) ?? throw Missing(tag, name);

        private int? Us(uint tag, string name)
        {
            if (!_values.TryGetValue(tag, out var value))
            {
                return null;
            }
            if (value.Length < 2)
            {
                throw MedServeException.Invalid($"{name} {TagOf(tag)} must hold an unsigned short (US)", TagOf(tag));
            }
            return U16Value(value.Span);
        }

        private ushort U16Value(ReadOnlySpan<byte> value) => BigEndian
            ? BinaryPrimitives.ReadUInt16BigEndian(value)
            : BinaryPrimitives.ReadUInt16LittleEndian(value);

        private string? Str(uint tag) => _values.TryGetValue(tag, out var value) && Text(value.Span) is { Length: > 0 } s ? s : null;

        private double? Ds(uint tag, string name)
        {
            var values = Doubles(tag, 1, strict: true, name);
            return values?[0];
        }

        private double[]? Doubles(uint tag, int count, bool strict = false, string? name = null)
        {
            if (!_values.TryGetValue(tag, out var value))
            {
                return null;
            }
            var parts = Text(value.Span).Split('\\');
            if (strict && parts is [""])
            {
                return null;
            }
            var result = new double[count];
            if (parts.Length < count)
            {
                return strict ? throw BadDs(tag, name!) : null;
            }
            for (var i = 0; i < count; i++)
            {
                if (!double.TryParse(parts[i].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out result[i]) || !double.IsFinite(result[i]))
                {
                    return strict ? throw BadDs(tag, name!) : null;
                }
            }
            return result;
        }

        private static MedServeException BadDs(uint tag, string name) =>
            MedServeException.Invalid($"{name} {TagOf(tag)} is not a decimal string (DS)", TagOf(tag));

        private static MedServeException Missing(uint tag, string name) =>
            MedServeException.Invalid($"{name} {TagOf(tag)} is missing: the file is not an image this server can decode", TagOf(tag));
    }

    private static string Text(ReadOnlySpan<byte> value) => Encoding.ASCII.GetString(value).Trim(' ', '\0');

    private static string Tag(ushort group, ushort element) => $"({group:X4},{element:X4})";

    private static string TagOf(uint tag) => Tag((ushort)(tag >> 16), (ushort)tag);

    private static string Name(uint tag) => tag == PixelData ? "Pixel Data (7FE0,0010)" : "element " + TagOf(tag);

    private static string Len(long length) => length == 0xFFFFFFFF ? "an undefined number of" : length.ToString(CultureInfo.InvariantCulture);

    private static MedServeException Truncated(string what) => MedServeException.Invalid($"the DICOM file is truncated or malformed: {what}", "dicom");
}
