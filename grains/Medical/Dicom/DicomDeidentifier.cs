using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace MedServe.Medical.Dicom;

/// <summary>
/// De-identification after DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile, for studies and
/// job inputs MedServe keeps. Applied to every data set, nested sequence items included:
/// <list type="bullet">
/// <item>private attributes (odd groups), curves (50xx), overlays (60xx), digital signatures and original-attributes
/// sequences: removed;</item>
/// <item>the profile's identifying attributes (<see cref="Removed"/>: names, addresses, ids, institutions, stations,
/// devices, descriptions, comments, the sequences that carry them): removed; the type 2 ones a viewer expects
/// (<see cref="Emptied"/>: Patient's Name and ID, birth date, sex, study date and time, accession number, referring
/// physician, study ID, content date and time): kept empty;</item>
/// <item>every other person name (PN) emptied, every other date, date-time and time (DA, DT, TM) removed;</item>
/// <item>every UID that is not one of the standard's own (<c>1.2.840.10008.*</c>: SOP classes, transfer syntaxes, ...)
/// replaced by a keyed hash, <c>2.25.</c> + the first 128 bits of HMAC-SHA256(key, uid) as a decimal (<see cref="HashUid"/>):
/// the same input UID gives the same new UID under the same key, so a study stays one study and references inside
/// it (Referenced SOP Instance UID, Frame of Reference) still point where they did; the meta information's Media
/// Storage SOP Instance UID follows;</item>
/// <item>Patient Identity Removed (0012,0062) YES, De-identification Method (0012,0063) and Longitudinal Temporal
/// Information Modified (0028,0303) REMOVED are added.</item>
/// </list>
/// Pixel data is kept as it is: a file whose Burned In Annotation (0028,0301) is YES is refused, since text in the
/// image would survive. Runs GDCM (reads, edits and writes a valid Part 10 file in the same transfer syntax), so the
/// server calls it through a decoder worker (<see cref="DicomDecoderPool.DeidentifyAsync"/>).
/// </summary>
public static class DicomDeidentifier
{
    /// <summary>Written to De-identification Method (0012,0063).</summary>
    public const string Method = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile; UIDs by keyed hash; dates removed (MedServe)";

    /// <summary>Shortest key accepted (bytes).</summary>
    public const int MinKeyBytes = 16;

    /// <summary>Attributes kept with an empty value (type 2 in the common IODs; profile action Z).</summary>
    public static readonly IReadOnlySet<uint> Emptied = new HashSet<uint>
    {
        0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00080020, 0x00080030, 0x00080050, 0x00080090, 0x00200010,
        0x00080023, 0x00080033, 0x00700084,
    };

    /// <summary>Identifying attributes removed (profile action X, or D/Z where no IOD needs them).</summary>
    public static readonly IReadOnlySet<uint> Removed = new HashSet<uint>
    {
        // General Study, Series, Equipment, physicians, institution
        0x00080080, 0x00080081, 0x00080082, 0x00080092, 0x00080094, 0x00080096, 0x0008009C, 0x0008009D, 0x00081010,
        0x00081030, 0x0008103E, 0x00081040, 0x00081041, 0x00081048, 0x00081049, 0x00081050, 0x00081052, 0x00081060,
        0x00081062, 0x00081070, 0x00081072, 0x00081080, 0x00081084, 0x00081110, 0x00081111, 0x00081120, 0x00082111,
        0x00084000,
        // Patient
        0x00100021, 0x00100032, 0x00100050, 0x00100101, 0x00100102, 0x00101000, 0x00101001, 0x00101002, 0x00101005,
        0x00101010, 0x00101020, 0x00101030, 0x00101040, 0x00101050, 0x00101060, 0x00101080, 0x00101081, 0x00101090,
        0x00101100, 0x00102000, 0x00102110, 0x00102150, 0x00102152, 0x00102154, 0x00102155, 0x00102160, 0x00102180,
        0x001021A0, 0x001021B0, 0x001021C0, 0x001021D0, 0x001021F0, 0x00102203, 0x00102297, 0x00102299, 0x00104000,
        // Acquisition devices and protocol
        0x00181000, 0x00181004, 0x00181005, 0x00181007, 0x00181008, 0x00181030, 0x00181400, 0x00184000, 0x0018700A,
        0x0018A003,
        // Comments
        0x00204000, 0x00209158,
        // Study scheduling, visit, procedure steps, requests, results
        0x00320012, 0x00321020, 0x00321021, 0x00321030, 0x00321032, 0x00321033, 0x00321060, 0x00321070, 0x00324000,
        0x00380010, 0x00380300, 0x00380400, 0x00380500, 0x00384000, 0x00400001, 0x00400006, 0x00400241, 0x00400242,
        0x00400243, 0x00400253, 0x00400254, 0x00400275, 0x00400280, 0x00401001, 0x00401010, 0x00401400, 0x00402001,
        0x00402016, 0x00402017, 0x00402400, 0x00403001, 0x0040A027, 0x0040A073, 0x0040A075, 0x0040A123, 0x0040A730,
        // Text and interpretation
        0x40000010, 0x40004000, 0x40080114,
        // Signatures and the attributes an earlier edit kept
        0xFFFAFFFA, 0x04000550, 0x04000561,
    };

    private const uint PatientIdentityRemoved = 0x00120062, DeidentificationMethod = 0x00120063,
        LongitudinalTemporalInformationModified = 0x00280303, BurnedInAnnotation = 0x00280301;

    /// <summary>The new UID of <paramref name="uid"/> under <paramref name="key"/>: <c>2.25.</c> + 128 bits of HMAC-SHA256, decimal.</summary>
    public static string HashUid(string uid, ReadOnlySpan<byte> key)
    {
        var mac = HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(uid));
        return "2.25." + new BigInteger(mac.AsSpan(0, 16), isUnsigned: true, isBigEndian: true).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Why a file was not de-identified; fixed text, never file content.</summary>
    public enum Refusal
    {
        None,
        Unreadable,
        BurnedInAnnotation,
        WriteFailed,
    }

    /// <summary>De-identifies one Part 10 file with GDCM; returns the new file, or why not.</summary>
    public static (byte[]? File, Refusal Refusal) Deidentify(ReadOnlySpan<byte> file, ReadOnlySpan<byte> key)
    {
        if (key.Length < MinKeyBytes)
        {
            throw new ArgumentException($"the de-identification key needs at least {MinKeyBytes} bytes", nameof(key));
        }
        GdcmDecoder.Quiet();
        using var input = GdcmDecoder.MemoryFile.Create(file);
        using var reader = new gdcm.Reader();
        reader.SetFileName(input.Path);
        if (!reader.Read())
        {
            return (null, Refusal.Unreadable);
        }
        using var gdcmFile = reader.GetFile();
        using var dataSet = gdcmFile.GetDataSet();
        var keyBytes = key.ToArray();
        var burnedIn = Text(dataSet, BurnedInAnnotation);
        if (string.Equals(burnedIn, "YES", StringComparison.OrdinalIgnoreCase))
        {
            return (null, Refusal.BurnedInAnnotation);
        }
        using var dictionary = gdcm.Global.GetInstance().GetDicts().GetPublicDict();
        Clean(dataSet, keyBytes, dictionary, depth: 0);
        Put(dataSet, PatientIdentityRemoved, gdcm.VR.VRType.CS, "YES");
        Put(dataSet, DeidentificationMethod, gdcm.VR.VRType.LO, Method);
        Put(dataSet, LongitudinalTemporalInformationModified, gdcm.VR.VRType.CS, "REMOVED");

        // The meta information: the instance UID follows the data set's; the sending AE title goes.
        using var meta = gdcmFile.GetHeader();
        if (Text(meta, 0x00020003) is { Length: > 0 } mediaUid && !IsStandard(mediaUid))
        {
            Put(meta, 0x00020003, gdcm.VR.VRType.UI, HashUid(mediaUid, keyBytes));
        }
        meta.Remove(new gdcm.Tag(0x00020016));
        // The writer of the file is now GDCM under MedServe, not the software that made the original.
        Put(meta, 0x00020012, gdcm.VR.VRType.UI, gdcm.UIDGenerator.GetGDCMUID());
        Put(meta, 0x00020013, gdcm.VR.VRType.SH, "MEDSERVE");

        using var output = GdcmDecoder.MemoryFile.Create([]);
        using var writer = new gdcm.Writer();
        writer.SetFile(gdcmFile);
        writer.SetFileName(output.Path);
        if (!writer.Write())
        {
            return (null, Refusal.WriteFailed);
        }
        return (output.ReadAll(), Refusal.None);
    }

    private static void Clean(gdcm.DataSet dataSet, byte[] key, gdcm.Dict dictionary, int depth)
    {
        if (depth > 16)
        {
            return;
        }
        // Collect first: the set is edited while we decide.
        var elements = new List<gdcm.DataElement>();
        using (var walk = new gdcm.CSharpDataSet(dataSet))
        {
            for (walk.Start(); !walk.IsAtEnd(); walk.Next())
            {
                elements.Add(new gdcm.DataElement(walk.GetCurrent()));
            }
        }
        foreach (var element in elements)
        {
            using var tag = element.GetTag();
            var number = tag.GetElementTag();
            var group = tag.GetGroup();
            if (tag.IsPrivate() || (group >= 0x5000 && group <= 0x501E) || (group >= 0x6000 && group <= 0x601E) || Removed.Contains(number))
            {
                dataSet.Remove(tag);
                continue;
            }
            var vr = VrOf(element, tag, dictionary);
            if (Emptied.Contains(number))
            {
                Put(dataSet, number, vr, "");
                continue;
            }
            switch (vr)
            {
                case gdcm.VR.VRType.UI:
                    if (ValueText(element) is { Length: > 0 } uid)
                    {
                        var parts = uid.Split('\\');
                        Put(dataSet, number, vr, string.Join('\\', parts.Select(u => IsStandard(u) ? u : HashUid(u, key))));
                    }
                    break;
                case gdcm.VR.VRType.PN:
                    Put(dataSet, number, vr, "");
                    break;
                case gdcm.VR.VRType.DA or gdcm.VR.VRType.DT or gdcm.VR.VRType.TM:
                    dataSet.Remove(tag);
                    break;
                case gdcm.VR.VRType.SQ:
                    CleanSequence(dataSet, element, key, dictionary, depth);
                    break;
                default:
                    PadOddLength(dataSet, element, tag, vr);
                    break;
            }
        }
    }

    private static void CleanSequence(gdcm.DataSet dataSet, gdcm.DataElement element, byte[] key, gdcm.Dict dictionary, int depth)
    {
        using var pointer = element.GetValueAsSQ();
        var sequence = pointer?.GetPointer();
        if (sequence is null)
        {
            return;
        }
        var items = sequence.GetNumberOfItems();
        for (uint i = 1; i <= items; i++)
        {
            using var item = sequence.GetItem(i);
            using var nested = item.GetNestedDataSet();
            Clean(nested, key, dictionary, depth + 1);
            // The item's length changed with its content (hashed UIDs are shorter or longer): write it delimited.
            item.SetVLToUndefined();
        }
        // Put the edited sequence back (GDCM may have parsed it from bytes into a new object), delimited too: GDCM's
        // writer asserts (aborts) when a stored length no longer matches the content.
        sequence.SetLengthToUndefined();
        element.SetVR(new gdcm.VR(gdcm.VR.VRType.SQ));
        element.SetValue(sequence);
        element.SetVLToUndefined();
        dataSet.Replace(element);
    }

    /// <summary>
    /// An element of odd length (the standard wants even ones, some writers do not) gets its padding byte before GDCM
    /// writes the file, so the written length and the value agree.
    /// </summary>
    private static void PadOddLength(gdcm.DataSet dataSet, gdcm.DataElement element, gdcm.Tag tag, gdcm.VR.VRType vr)
    {
        using var vl = element.GetVL();
        uint length = vl;
        if (length % 2 == 0 || vl.IsUndefined())
        {
            return;
        }
        using var value = element.GetByteValue();
        if (value is null)
        {
            return;
        }
        var bytes = new byte[length + 1];
        if (!value.GetBuffer(bytes, length))
        {
            return;
        }
        bytes[length] = vr is gdcm.VR.VRType.UI or gdcm.VR.VRType.OB or gdcm.VR.VRType.OW or gdcm.VR.VRType.UN ? (byte)0 : (byte)' ';
        using var padded = new gdcm.DataElement(tag);
        padded.SetVR(element.GetVR());
        padded.SetByteValue(bytes, new gdcm.VL(length + 1));
        dataSet.Replace(padded);
    }

    private static gdcm.VR.VRType VrOf(gdcm.DataElement element, gdcm.Tag tag, gdcm.Dict dictionary)
    {
        using var vr = element.GetVR();
        gdcm.VR.VRType type = vr;
        if (type is gdcm.VR.VRType.INVALID or gdcm.VR.VRType.UN)
        {
            using var entry = dictionary.GetDictEntry(tag);
            using var known = entry.GetVR();
            type = known;
        }
        return type;
    }

    /// <summary>UIDs the standard defines (SOP classes, transfer syntaxes, coding schemes): not identifying, kept.</summary>
    private static bool IsStandard(string uid) => uid.StartsWith("1.2.840.10008.", StringComparison.Ordinal);

    private static string? Text(gdcm.DataSet dataSet, uint tag)
    {
        using var t = new gdcm.Tag(tag);
        if (!dataSet.FindDataElement(t))
        {
            return null;
        }
        using var element = dataSet.GetDataElement(t);
        return ValueText(element);
    }

    private static string? ValueText(gdcm.DataElement element)
    {
        using var value = element.GetByteValue();
        if (value is null)
        {
            return null;
        }
        using var vl = value.GetLength();
        uint length = vl;
        var bytes = new byte[length];
        if (length > 0 && !value.GetBuffer(bytes, length))
        {
            return null;
        }
        return Encoding.ASCII.GetString(bytes).Trim(' ', '\0');
    }

    /// <summary>Sets an element's value (padded to even length as its VR wants), replacing it or adding it.</summary>
    private static void Put(gdcm.DataSet dataSet, uint tag, gdcm.VR.VRType vr, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        if (bytes.Length % 2 == 1)
        {
            bytes = [.. bytes, vr == gdcm.VR.VRType.UI ? (byte)0 : (byte)' '];
        }
        using var t = new gdcm.Tag(tag);
        using var element = new gdcm.DataElement(t);
        element.SetVR(new gdcm.VR(vr));
        element.SetByteValue(bytes, new gdcm.VL((uint)bytes.Length));
        dataSet.Replace(element);
    }
}
