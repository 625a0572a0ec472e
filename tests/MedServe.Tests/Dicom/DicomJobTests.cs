using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MedServe.Tests.Support;

namespace MedServe.Tests.Dicom;

/// <summary>
/// DICOM jobs over the management API on the real node: a series (<c>multipart/related</c>) and a zip of files become one
/// item per slice or frame, in instance order, whose answers equal V2 DICOM infer of each file; item ids are hashes,
/// and nothing that identifies a patient or an instance reaches the results or their downloads; bad zips and bodies are
/// 4xx that name the problem, never a file's name.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed partial class DicomJobTests(NodeFixture node)
{
    [GeneratedRegex("^[0-9a-f]{16}$")]
    private static partial Regex HexId();

    /// <summary>MR_small.dcm made another instance of its series: its own SOP Instance UID, pixels raised, Instance Number set, a marked patient name.</summary>
    private static byte[] Slice(int offset, int instance, string uid, string patient)
    {
        var editor = DicomTestFiles.Editor.Parse(DicomTestFiles.MrSlice(offset, instance));
        editor.Set(0x0008, 0x0018, "UI", uid).Set(0x0002, 0x0003, "UI", uid).Set(0x0010, 0x0010, "PN", patient);
        return editor.Write();
    }

    private static string NewUid() => "1.2.826.0.1.3680043.8.498." + Random.Shared.NextInt64(1, long.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static ByteArrayContent Series(IEnumerable<byte[]> files, string partType = "application/dicom")
    {
        const string boundary = "medserve-job-series-1c2d";
        var body = new MemoryStream();
        foreach (var file in files)
        {
            body.Write(Encoding.ASCII.GetBytes($"--{boundary}\r\nContent-Type: {partType}\r\n\r\n"));
            body.Write(file);
            body.Write("\r\n"u8);
        }
        body.Write(Encoding.ASCII.GetBytes($"--{boundary}--\r\n"));
        var content = new ByteArrayContent(body.ToArray());
        content.Headers.TryAddWithoutValidation("Content-Type", $"multipart/related; type=\"application/dicom\"; boundary={boundary}");
        return content;
    }

    /// <summary>A zip of (path, bytes) entries.</summary>
    public static byte[] Zip(params (string Path, byte[] Bytes)[] entries)
    {
        var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (path, bytes) in entries)
            {
                using var stream = zip.CreateEntry(path, CompressionLevel.Fastest).Open();
                stream.Write(bytes);
            }
        }
        return buffer.ToArray();
    }

    private static ByteArrayContent Body(byte[] bytes, string type)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue(type);
        return content;
    }

    private async Task<JsonNode> SubmitAsync(string model, HttpContent content)
    {
        using var response = await node.Http.PostAsync($"/api/jobs?model={model}", content);
        var body = await NodeFixture.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"submit answered {(int)response.StatusCode}: {body}");
        return body!;
    }

    private static float[] Logits(JsonNode outputs, int row = 0)
    {
        var logits = outputs.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!;
        var width = logits["shape"]![1]!.GetValue<int>();
        return logits["data"]!.AsArray().Skip(row * width).Take(width).Select(v => v!.GetValue<float>()).ToArray();
    }

    /// <summary>V2 DICOM infer of one file: its outputs.</summary>
    private async Task<JsonNode> V2Async(byte[] file) =>
        (await NodeFixture.SuccessJsonAsync(node.Http.PostAsync("/v2/models/ct-mr-classifier/infer", Body(file, "application/dicom"))))["outputs"]!;

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.Zip(actual).All(p => Math.Abs(p.First - p.Second) <= 1e-5), $"{what}: [{string.Join(", ", actual)}], V2 answered [{string.Join(", ", expected)}]");
    }

    /// <summary>What must never leave the node: patient name and id, and the UIDs of the files.</summary>
    private static string[] Identifiers(IEnumerable<byte[]> files) =>
        [.. files.Select(DicomTestFiles.Editor.Parse)
            .SelectMany(e => new[] { e.Text(0x0010, 0x0010), e.Text(0x0010, 0x0020), e.Text(0x0008, 0x0018), e.Text(0x0020, 0x000D), e.Text(0x0020, 0x000E) })
            .OfType<string>().Where(v => v.Length > 3).Distinct()];

    private async Task AssertNoIdentifierAsync(string job, IEnumerable<byte[]> files)
    {
        var seen = await node.Http.GetStringAsync($"/api/jobs/{job}/results?format=json") + await node.Http.GetStringAsync($"/api/jobs/{job}/results?format=csv")
            + await node.Http.GetStringAsync($"/api/jobs/{job}");
        var identifiers = Identifiers(files);
        Assert.NotEmpty(identifiers);
        foreach (var identifier in identifiers)
        {
            Assert.DoesNotContain(identifier, seen, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_series_job_answers_each_slice_as_v2_does_in_instance_order()
    {
        var marker = "JOBPATIENT^" + Guid.NewGuid().ToString("N")[..8];
        // Sent out of order: instance 2, 3, 1.
        var slices = new[] { Slice(200, 2, NewUid(), marker), Slice(300, 3, NewUid(), marker), Slice(100, 1, NewUid(), marker) };
        var job = await SubmitAsync("ct-mr-classifier", Series(slices));
        Assert.Equal("dicom", job["source"]!.GetValue<string>());
        Assert.Equal(3, job["total"]!.GetValue<int>());
        var id = job["id"]!.GetValue<string>();
        Assert.Equal(3, (await JobWait.ForStateAsync(node.Http, id, "Completed"))["succeeded"]!.GetValue<int>());

        var results = JsonNode.Parse(await node.Http.GetStringAsync($"/api/jobs/{id}/results?format=json"))!["results"]!.AsArray();
        Assert.Equal(3, results.Count);
        var ids = results.Select(r => r!["id"]!.GetValue<string>()).ToArray();
        Assert.All(ids, i => Assert.Matches(HexId(), i));
        Assert.Equal(3, ids.Distinct().Count());
        // Instance order: the job's first item is instance 1 (sent third), and so on; each as V2 answers that file alone.
        var byInstance = new[] { slices[2], slices[0], slices[1] };
        for (var k = 0; k < 3; k++)
        {
            AssertClose(Logits(await V2Async(byInstance[k])), Logits(results[k]!["outputs"]!), $"item {k}");
        }
        Assert.NotEqual(Logits(results[0]!["outputs"]!), Logits(results[2]!["outputs"]!));
        await AssertNoIdentifierAsync(id, slices);

        // The same instances again (another job): the same item ids, since they are keyed hashes of the instances' UIDs.
        var again = await SubmitAsync("ct-mr-classifier", Series([slices[2], slices[1]]));
        await JobWait.ForStateAsync(node.Http, again["id"]!.GetValue<string>(), "Completed");
        var againIds = JsonNode.Parse(await node.Http.GetStringAsync($"/api/jobs/{again["id"]}/results"))!["results"]!.AsArray().Select(r => r!["id"]!.GetValue<string>());
        Assert.Equal(new[] { ids[0], ids[2] }, againIds.ToArray());
    }

    [Fact]
    public async Task A_zip_job_answers_one_item_per_file_and_frame_as_v2_does()
    {
        var ct = DicomTestFiles.Bytes("CT_small.dcm");
        var mr = DicomTestFiles.Bytes("MR_small.dcm");
        var frames = DicomTestFiles.Editor.Parse(DicomTestFiles.MultiFrameMr(3)).Set(0x0008, 0x0018, "UI", NewUid()).Write();
        var zip = Zip(("study/", []), ("study/CT_small.dcm", ct), ("__MACOSX/study/._CT_small.dcm", [1, 2, 3]), ("study/MR_small.dcm", mr), ("study/mf/frames.dcm", frames));
        var job = await SubmitAsync("ct-mr-classifier", Body(zip, "application/zip"));
        Assert.Equal("dicom", job["source"]!.GetValue<string>());
        Assert.Equal(5, job["total"]!.GetValue<int>());
        var id = job["id"]!.GetValue<string>();
        Assert.Equal(5, (await JobWait.ForStateAsync(node.Http, id, "Completed"))["succeeded"]!.GetValue<int>());

        var results = JsonNode.Parse(await node.Http.GetStringAsync($"/api/jobs/{id}/results?format=json"))!["results"]!.AsArray();
        Assert.Equal(5, results.Count);
        Assert.All(results, r => Assert.Matches(HexId(), r!["id"]!.GetValue<string>()));
        Assert.Equal(5, results.Select(r => r!["id"]!.GetValue<string>()).Distinct().Count());
        // The CT series first (it appears first), then the MR series: MR_small, then the three frames of the multi-frame file.
        AssertClose(Logits(await V2Async(ct)), Logits(results[0]!["outputs"]!), "CT_small");
        AssertClose(Logits(await V2Async(mr)), Logits(results[1]!["outputs"]!), "MR_small");
        var framesV2 = await V2Async(frames);
        for (var f = 0; f < 3; f++)
        {
            AssertClose(Logits(framesV2, f), Logits(results[2 + f]!["outputs"]!), $"frame {f + 1}");
        }
        var ctLogits = Logits(results[0]!["outputs"]!);
        var mrLogits = Logits(results[1]!["outputs"]!);
        Assert.True(ctLogits[0] > ctLogits[1] && mrLogits[1] > mrLogits[0], "CT is classified CT and MR is MR");
        await AssertNoIdentifierAsync(id, [ct, mr, frames]);
    }

    public static TheoryData<string, int, string> BadBodies => new()
    {
        { "zip-slip", 400, "leaves the archive" },
        { "absolute-path", 400, "leaves the archive" },
        { "not-a-zip", 400, "not a valid zip archive" },
        { "empty-zip", 400, "holds no files" },
        { "zip-bomb", 413, "MaxJobBytes" },
        { "too-many-entries", 413, "more than 10000 files" },
        { "zip-with-text", 400, "file 2: " },
        { "series-json-part", 415, "part 2 is not application/dicom" },
        { "series-untyped", 415, "must declare type=" },
        { "duplicate-instance", 400, "files 1 and 2 are the same instance" },
        { "tabular-model", 415, "does not take DICOM" },
        { "no-model", 400, "names its model" },
        { "unknown-model", 404, "no-such-model" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task Bad_dicom_jobs_are_refused_in_words(string kind, int status, string message)
    {
        var mr = DicomTestFiles.Bytes("MR_small.dcm");
        const string secretName = "SMITH_JOHN_19610203";
        var (model, content) = kind switch
        {
            "zip-slip" => ("ct-mr-classifier", Body(Zip(("ok.dcm", mr), ($"../{secretName}.dcm", mr)), "application/zip")),
            "absolute-path" => ("ct-mr-classifier", Body(Zip(($"/tmp/{secretName}.dcm", mr)), "application/zip")),
            "not-a-zip" => ("ct-mr-classifier", Body(mr, "application/zip")),
            "empty-zip" => ("ct-mr-classifier", Body(Zip(("folder/", [])), "application/zip")),
            "zip-bomb" => ("ct-mr-classifier", Body(ZipBomb(), "application/zip")),
            "too-many-entries" => ("ct-mr-classifier", Body(Zip([.. Enumerable.Range(0, 10_001).Select(i => ($"{i}.dcm", Array.Empty<byte>()))]), "application/zip")),
            "zip-with-text" => ("ct-mr-classifier", Body(Zip(("a.dcm", mr), ($"{secretName}.txt", Encoding.UTF8.GetBytes("hello"))), "application/zip")),
            "series-json-part" => ("ct-mr-classifier", SeriesWithJsonPart(mr)),
            "series-untyped" => ("ct-mr-classifier", Untyped(mr)),
            "duplicate-instance" => ("ct-mr-classifier", Series([mr, mr])),
            "tabular-model" => ("diabetes-linear", Body(mr, "application/dicom")),
            "no-model" => ("", Body(mr, "application/dicom")),
            "unknown-model" => ("no-such-model", Body(mr, "application/dicom")),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        using var response = await node.Http.PostAsync($"/api/jobs?model={model}", content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"{kind}: {(int)response.StatusCode} {text}");
        Assert.Contains(message, text, StringComparison.Ordinal);
        Assert.DoesNotContain("SMITH", text, StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    /// <summary>One entry of 600 MB of zeros (declared as such): a few hundred kilobytes of zip.</summary>
    private static byte[] ZipBomb()
    {
        var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var stream = zip.CreateEntry("bomb.dcm", CompressionLevel.Fastest).Open();
            var zeros = new byte[1 << 20];
            for (var i = 0; i < 600; i++)
            {
                stream.Write(zeros);
            }
        }
        return buffer.ToArray();
    }

    private static ByteArrayContent SeriesWithJsonPart(byte[] file)
    {
        const string boundary = "b-json-part";
        var body = new MemoryStream();
        body.Write(Encoding.ASCII.GetBytes($"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n"));
        body.Write(file);
        body.Write(Encoding.ASCII.GetBytes($"\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}--\r\n"));
        var content = new ByteArrayContent(body.ToArray());
        content.Headers.TryAddWithoutValidation("Content-Type", $"multipart/related; type=\"application/dicom\"; boundary={boundary}");
        return content;
    }

    private static ByteArrayContent Untyped(byte[] file)
    {
        var content = Series([file]);
        content.Headers.Remove("Content-Type");
        content.Headers.TryAddWithoutValidation("Content-Type", "multipart/related; boundary=medserve-job-series-1c2d");
        return content;
    }
}
