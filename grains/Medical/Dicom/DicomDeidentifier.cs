using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace MedServe.Medical.Dicom;

/// <summary>What routing needs to know of an instance, read before it is de-identified; kept in memory only.</summary>
public sealed record DicomRoutingFacts(string? Modality, string? BodyPart, string? SeriesDescription);

/// <summary>A de-identified instance: the new Part 10 bytes and its (new) identifiers.</summary>
public sealed record DeidentifiedInstance(byte[] Bytes, string StudyUid, string SeriesUid, string SopInstanceUid, string SopClassUid,
    int? InstanceNumber, DicomRoutingFacts Facts);

/// <summary>
/// DICOM PS3.15 Basic Application Level Confidentiality Profile, applied before anything is kept: the profile's
/// identifying attributes (names, ids, birth date, addresses, physicians, institution, descriptions, comments, dates)
/// are emptied (type 2) or removed, private attributes removed, and every UID replaced by <c>2.25.</c> + a keyed hash of
/// the original, so one input UID maps to the same new UID in every request (a study stays one study, a series one
/// series) and nobody without the cluster's pseudonym key can go back. Stricter than the profile: only attributes on
/// an allow list (the image pixel module, modality, body part, geometry, instance numbers, the functional groups and
/// lookup tables that decoding needs) survive, since unlisted and private attributes can carry identity too.
/// The result says so in (0012,0062) Patient Identity Removed = YES and (0012,0063) De-identification Method.
/// </summary>
public sealed class DicomDeidentifier(byte[] pseudonymKey)
{
    public const string Method = "DICOM PS3.15 Basic Application Level Confidentiality Profile; allow list of image attributes; UIDs replaced by keyed hash (MedServe)";

    private static readonly gdcm.Tag StudyUidTag = new(0x0020, 0x000D);
    private static readonly gdcm.Tag SeriesUidTag = new(0x0020, 0x000E);
    private static readonly gdcm.Tag SopInstanceUidTag = new(0x0008, 0x0018);
    private static readonly gdcm.Tag SopClassUidTag = new(0x0008, 0x0016);

    /// <summary>Type 2 attributes of the patient and study modules: kept, empty.</summary>
    private static readonly (ushort Group, ushort Element)[] Emptied =
    [
        (0x0010, 0x0010), // Patient's Name
        (0x0010, 0x0020), // Patient ID
        (0x0010, 0x0030), // Patient's Birth Date
        (0x0010, 0x0040), // Patient's Sex
        (0x0008, 0x0020), // Study Date
        (0x0008, 0x0030), // Study Time
        (0x0008, 0x0050), // Accession Number
        (0x0008, 0x0090), // Referring Physician's Name
        (0x0020, 0x0010), // Study ID
    ];

    /// <summary>UIDs that identify this study's objects: replaced by their keyed hash.</summary>
    private static readonly (ushort Group, ushort Element)[] Replaced =
    [
        (0x0020, 0x000D), // Study Instance UID
        (0x0020, 0x000E), // Series Instance UID
        (0x0008, 0x0018), // SOP Instance UID
        (0x0020, 0x0052), // Frame of Reference UID
        (0x0020, 0x0200), // Synchronization Frame of Reference UID
    ];

    /// <summary>Attributes kept as they are (besides the pixel module group 0028 and the pixel data).</summary>
    private static readonly HashSet<(ushort, ushort)> Kept =
    [
        (0x0008, 0x0005), // Specific Character Set
        (0x0008, 0x0008), // Image Type
        (0x0008, 0x0016), // SOP Class UID
        (0x0008, 0x0060), // Modality
        (0x0018, 0x0015), // Body Part Examined
        (0x0018, 0x0050), // Slice Thickness
        (0x0018, 0x0088), // Spacing Between Slices
        (0x0020, 0x0011), // Series Number
        (0x0020, 0x0012), // Acquisition Number
        (0x0020, 0x0013), // Instance Number
        (0x0020, 0x0020), // Patient Orientation
        (0x0020, 0x0032), // Image Position (Patient)
        (0x0020, 0x0037), // Image Orientation (Patient)
        (0x0020, 0x1041), // Slice Location
        (0x5200, 0x9229), // Shared Functional Groups Sequence (rescale, pixel measures of multi-frame images)
        (0x5200, 0x9230), // Per-frame Functional Groups Sequence
        (0x7FE0, 0x0010), // Pixel Data
    ];

    /// <summary>The new UID for <paramref name="uid"/>: <c>2.25.</c> and 128 bits of HMAC-SHA256 under the pseudonym key.</summary>
    public string MapUid(string uid)
    {
        var hash = HMACSHA256.HashData(pseudonymKey, Encoding.ASCII.GetBytes(uid.Trim().TrimEnd('\0')));
        return "2.25." + new BigInteger(hash.AsSpan(0, 16), isUnsigned: true, isBigEndian: true).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// De-identifies one Part 10 file. Throws <see cref="DicomInputException"/> for a file that is not DICOM or has no
    /// SOP Instance UID; the message names the problem, never a value.
    /// </summary>
    public DeidentifiedInstance Deidentify(ReadOnlySpan<byte> part10)
    {
        using var scratch = DicomScratch.Write(part10);
        using var reader = new gdcm.Reader();
        reader.SetFileName(scratch.Input);
        if (!reader.Read())
        {
            throw new DicomInputException("the part is not a readable DICOM Part 10 file");
        }
        var file = reader.GetFile();
        var data = file.GetDataSet();
        using var strings = new gdcm.StringFilter();
        strings.SetFile(file);
        string? Read(ushort group, ushort element)
        {
            var tag = new gdcm.Tag(group, element);
            return data.FindDataElement(tag) ? Clean(strings.ToString(tag)) : null;
        }
        var facts = new DicomRoutingFacts(Read(0x0008, 0x0060), Read(0x0018, 0x0015), Read(0x0008, 0x103E));
        var (study, series, sop, sopClass) = (Read(0x0020, 0x000D), Read(0x0020, 0x000E), Read(0x0008, 0x0018), Read(0x0008, 0x0016));
        if (string.IsNullOrEmpty(sop) || string.IsNullOrEmpty(sopClass))
        {
            throw new DicomInputException("the file has no SOP Instance UID (0008,0018) or SOP Class UID (0008,0016)");
        }
        // A file without study or series UID still gets stable ones, derived from its instance.
        study = string.IsNullOrEmpty(study) ? "study-of-" + sop : study;
        series = string.IsNullOrEmpty(series) ? "series-of-" + sop : series;
        var instanceNumber = int.TryParse(Read(0x0020, 0x0013), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : (int?)null;

        using var anonymizer = new gdcm.Anonymizer();
        anonymizer.SetFile(file);
        foreach (var tag in TopLevelTags(data))
        {
            var key = (tag.GetGroup(), tag.GetElement());
            if (key.Item1 == 0x0028 || Kept.Contains(key) || Replaced.Contains(key) || Emptied.Contains(key))
            {
                continue;
            }
            anonymizer.Remove(tag);
        }
        foreach (var (group, element) in Emptied)
        {
            anonymizer.Empty(new gdcm.Tag(group, element));
        }
        foreach (var (group, element) in Replaced)
        {
            var tag = new gdcm.Tag(group, element);
            if (data.FindDataElement(tag) && Clean(strings.ToString(tag)) is { Length: > 0 } uid)
            {
                anonymizer.Replace(tag, MapUid(uid));
            }
        }
        anonymizer.Replace(StudyUidTag, MapUid(study));
        anonymizer.Replace(SeriesUidTag, MapUid(series));
        anonymizer.Replace(new gdcm.Tag(0x0012, 0x0062), "YES");
        anonymizer.Replace(new gdcm.Tag(0x0012, 0x0063), Method);
        anonymizer.RemovePrivateTags();

        // The file meta information repeats the instance UID (0002,0003) and may name the sender: written anew.
        using var header = file.GetHeader();
        header.Clear();
        using var writer = new gdcm.Writer();
        writer.SetFile(anonymizer.GetFile());
        writer.SetFileName(scratch.Output);
        writer.CheckFileMetaInformationOn();
        if (!writer.Write())
        {
            throw new DicomInputException("the de-identified file could not be written (an attribute GDCM cannot encode)");
        }
        return new DeidentifiedInstance(File.ReadAllBytes(scratch.Output), MapUid(study), MapUid(series), MapUid(sop), sopClass, instanceNumber, facts);
    }

    /// <summary>The tags of the top-level data set, in order (GDCM's C# binding has no enumerator over it).</summary>
    private static List<gdcm.Tag> TopLevelTags(gdcm.DataSet data)
    {
        var tags = new List<gdcm.Tag>();
        var from = new gdcm.Tag(0x0000, 0x0000);
        while (tags.Count < 100_000)
        {
            var element = data.FindNextDataElement(from);
            var tag = element.GetTag();
            var (group, number) = (tag.GetGroup(), tag.GetElement());
            if (group == 0xFFFF || (tags.Count > 0 && tags[^1].GetGroup() == group && tags[^1].GetElement() == number) || !data.FindDataElement(tag))
            {
                break;
            }
            tags.Add(new gdcm.Tag(group, number));
            from = number == 0xFFFF ? new gdcm.Tag((ushort)(group + 1), 0) : new gdcm.Tag(group, (ushort)(number + 1));
            if (group == 0xFFFF && number == 0xFFFF)
            {
                break;
            }
        }
        return tags;
    }

    private static string? Clean(string? value) => value?.Trim().TrimEnd('\0').Trim() is { Length: > 0 } v ? v : null;
}
