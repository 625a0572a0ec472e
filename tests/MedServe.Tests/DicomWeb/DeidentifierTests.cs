using System.Text;
using MedServe.Medical.Dicom;
using MedServe.Tests.Support;

namespace MedServe.Tests.DicomWeb;

/// <summary>
/// The PS3.15 basic profile on the real test files: the output rereads as DICOM (GDCM), carries none of the input's
/// patient name, id, birth date or UIDs, says it was de-identified, and maps UIDs the same way every time.
/// </summary>
public sealed class DeidentifierTests
{
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    public static TheoryData<string> Files() => new(Directory.GetFiles(Paths.Data("dicom"), "*.dcm")
        .Select(Path.GetFileName).Where(f => f is not ("MR_truncated.dcm" or "badVR.dcm"))!);

    [Theory]
    [MemberData(nameof(Files))]
    public void Identifiers_are_gone_and_the_image_still_reads(string name)
    {
        var input = File.ReadAllBytes(Paths.Data("dicom", name));
        var original = Read(input);
        var result = new DicomDeidentifier(Key).Deidentify(input);
        var output = Read(result.Bytes);

        Assert.Equal("YES", output[(0x0012, 0x0062)]);
        Assert.Equal(result.SopInstanceUid, output[(0x0008, 0x0018)]);
        Assert.Equal(result.StudyUid, output[(0x0020, 0x000D)]);
        Assert.StartsWith("2.25.", result.SopInstanceUid, StringComparison.Ordinal);
        Assert.Equal(original[(0x0008, 0x0016)], output[(0x0008, 0x0016)]);
        Assert.Equal(Get(original, 0x0008, 0x0060), Get(output, 0x0008, 0x0060));
        var text = Encoding.Latin1.GetString(result.Bytes);
        foreach (var tag in new[] { (0x0010, 0x0010), (0x0010, 0x0020), (0x0010, 0x0030), (0x0008, 0x0018), (0x0020, 0x000D), (0x0020, 0x000E), (0x0020, 0x0052), (0x0008, 0x0080), (0x0008, 0x0090) })
        {
            if (Get(original, tag.Item1, tag.Item2) is { Length: > 3 } value)
            {
                Assert.DoesNotContain(value, text, StringComparison.Ordinal);
            }
        }
        Assert.Equal(string.Empty, Get(output, 0x0010, 0x0010) ?? string.Empty);

        // The pixels survive: GDCM decodes the de-identified file as it decoded the original.
        Assert.Equal(Pixels(input), Pixels(result.Bytes));
    }

    [Fact]
    public void The_same_uid_maps_to_the_same_new_uid_and_other_keys_to_others()
    {
        var input = File.ReadAllBytes(Paths.Data("dicom", "MR_small.dcm"));
        var a = new DicomDeidentifier(Key).Deidentify(input);
        var b = new DicomDeidentifier(Key).Deidentify(input);
        var c = new DicomDeidentifier(new byte[32]).Deidentify(input);
        Assert.Equal((a.StudyUid, a.SeriesUid, a.SopInstanceUid), (b.StudyUid, b.SeriesUid, b.SopInstanceUid));
        Assert.NotEqual(a.SopInstanceUid, c.SopInstanceUid);
        // Variants of one file (other transfer syntaxes) keep their study: one study, consistently renamed.
        var rle = new DicomDeidentifier(Key).Deidentify(File.ReadAllBytes(Paths.Data("dicom", "MR_small_RLE.dcm")));
        Assert.Equal(Read(input)[(0x0020, 0x000D)] == Read(File.ReadAllBytes(Paths.Data("dicom", "MR_small_RLE.dcm")))[(0x0020, 0x000D)], a.StudyUid == rle.StudyUid);
    }

    [Fact]
    public void Not_dicom_is_a_clear_error()
    {
        var error = Assert.Throws<DicomInputException>(() => new DicomDeidentifier(Key).Deidentify("not a dicom file at all"u8));
        Assert.Contains("not a readable DICOM", error.Message, StringComparison.Ordinal);
    }

    private static string? Get(Dictionary<(ushort, ushort), string> values, int group, int element) =>
        values.GetValueOrDefault(((ushort)group, (ushort)element));

    private static Dictionary<(ushort, ushort), string> Read(byte[] bytes)
    {
        var path = Path.Combine(Paths.TempDirectory("deid"), "f.dcm");
        File.WriteAllBytes(path, bytes);
        using var reader = new gdcm.Reader();
        reader.SetFileName(path);
        Assert.True(reader.Read());
        using var strings = new gdcm.StringFilter();
        strings.SetFile(reader.GetFile());
        var data = reader.GetFile().GetDataSet();
        var values = new Dictionary<(ushort, ushort), string>();
        foreach (var (g, e) in new (ushort, ushort)[] { (0x0008, 0x0016), (0x0008, 0x0018), (0x0008, 0x0060), (0x0008, 0x0080), (0x0008, 0x0090), (0x0010, 0x0010), (0x0010, 0x0020), (0x0010, 0x0030), (0x0012, 0x0062), (0x0020, 0x000D), (0x0020, 0x000E), (0x0020, 0x0052) })
        {
            var tag = new gdcm.Tag(g, e);
            if (data.FindDataElement(tag))
            {
                values[(g, e)] = strings.ToString(tag).Trim().TrimEnd('\0').Trim();
            }
        }
        return values;
    }

    private static byte[] Pixels(byte[] bytes)
    {
        var path = Path.Combine(Paths.TempDirectory("deid-px"), "f.dcm");
        File.WriteAllBytes(path, bytes);
        using var reader = new gdcm.ImageReader();
        reader.SetFileName(path);
        Assert.True(reader.Read());
        var image = reader.GetImage();
        var buffer = new byte[image.GetBufferLength()];
        Assert.True(image.GetBuffer(buffer));
        return buffer;
    }
}
