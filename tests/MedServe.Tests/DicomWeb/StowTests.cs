using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.DicomWeb;

/// <summary>
/// DICOMweb STOW-RS against a real peer: Debian's Orthanc sends a study to MedServe (<c>/dicom-web/servers/medserve/stow</c>);
/// MedServe stores it de-identified and encrypted, answers the standard response Orthanc understands, and keeps no
/// patient name, id, birth date or original UID anywhere: not in grain storage, logs, /metrics, responses, job results or the
/// audit trail.
/// </summary>
public sealed class StowTests : IAsyncLifetime
{
    private readonly string _data = Paths.TempDirectory("stow");
    private NodeProcess _node = null!;
    private Uri _base = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        var port = NodeProcess.FreePort();
        _node = await NodeProcess.StartAsync(_data, Paths.Samples, port, NodeProcess.FreePort(), NodeProcess.FreePort(), "--Logging:LogLevel:Default", "Information");
        _base = new Uri($"http://127.0.0.1:{port}");
        _http = _node.Http;
    }

    public async Task DisposeAsync() => await _node.DisposeAsync();

    [Fact]
    public async Task Orthanc_sends_a_study_that_is_stored_de_identified_and_encrypted()
    {
        var files = new[] { "CT_small.dcm", "MR_small.dcm" }.Select(f => File.ReadAllBytes(Paths.Data("dicom", f))).ToArray();
        var identities = files.SelectMany(Identifiers).Where(v => v.Length > 3).Distinct().ToArray();
        Assert.NotEmpty(identities);

        await using var orthanc = await OrthancProcess.StartAsync(_base, NodeFixture.AdminKey);
        var (_, ctStudy) = await orthanc.UploadAsync(files[0]);
        var (status, body) = await orthanc.StowAsync(ctStudy);
        Assert.True(status == 200, $"Orthanc's STOW-RS call failed: {status} {body}\n{orthanc.Log}\n{_node.Output}");

        // The study is listed under its new UID, with its instance, and the instance's bytes read back de-identified.
        var studies = JsonNode.Parse(await _http.GetStringAsync("/api/studies"))!.AsArray();
        var study = Assert.Single(studies)!;
        var uid = study["study_uid"]!.GetValue<string>();
        Assert.StartsWith("2.25.", uid, StringComparison.Ordinal);
        var detail = JsonNode.Parse(await _http.GetStringAsync($"/api/studies/{uid}"))!;
        var instance = Assert.Single(detail["study"]!["instances"]!.AsArray())!;
        Assert.Equal("CT", instance["modality"]!.GetValue<string>());

        // A CT series matches both imaging samples' routing rules: one job each, and their answers are those of the
        // same file sent to V2 infer (where DICOM preprocessing is proven against the training pipeline's tensors).
        var jobs = detail["study"]!["jobs"]!.AsArray().Select(j => (Model: j!["model"]!.GetValue<string>(), Id: j["job_id"]!.GetValue<string>())).ToArray();
        Assert.Equal(["ct-bone-segmenter", "ct-mr-classifier"], jobs.Select(j => j.Model).Order(StringComparer.Ordinal));
        var classifierJob = jobs.Single(j => j.Model == "ct-mr-classifier").Id;
        await JobWait.ForStateAsync(_http, classifierJob, "Completed");
        await JobWait.ForStateAsync(_http, jobs.Single(j => j.Model == "ct-bone-segmenter").Id, "Completed");
        var results = await _http.GetStringAsync($"/api/jobs/{classifierJob}/results?format=json");
        var item = Assert.Single(JsonNode.Parse(results)!["results"]!.AsArray())!;
        var jobLogits = item["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        using var direct = await _http.PostAsync("/v2/models/ct-mr-classifier/infer", new ByteArrayContent(files[0]) { Headers = { ContentType = new MediaTypeHeaderValue("application/dicom") } });
        var directBody = JsonNode.Parse(await direct.Content.ReadAsStringAsync())!;
        var directLogits = directBody["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        Assert.Equal(directLogits.Length, jobLogits.Length);
        Assert.All(directLogits.Zip(jobLogits), p => Assert.Equal(p.First, p.Second, 1e-5));
        Assert.True(jobLogits[0] > jobLogits[1], "the CT slice is classified CT");

        // Sent by hand: a series of two files; one part that is not DICOM fails alone (202, FailedSOPSequence).
        using var multipart = new MultipartContent("related", "medserve-test-boundary");
        multipart.Headers.ContentType!.Parameters.Add(new NameValueHeaderValue("type", "\"application/dicom\""));
        foreach (var part in new[] { files[1], "not dicom"u8.ToArray() })
        {
            var content = new ByteArrayContent(part);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/dicom");
            multipart.Add(content);
        }
        using var stow = await _http.PostAsync("/dicomweb/studies", multipart);
        var answer = JsonNode.Parse(await stow.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.Accepted, stow.StatusCode);
        Assert.Equal("application/dicom+json", stow.Content.Headers.ContentType!.MediaType);
        Assert.Single(answer["00081199"]!["Value"]!.AsArray());
        Assert.Equal(0xC000, answer["00081198"]!["Value"]![0]!["00081197"]!["Value"]![0]!.GetValue<int>());

        // Wrong media type: a problem naming Content-Type.
        using var wrong = await _http.PostAsync("/dicomweb/studies", new StringContent("{}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, wrong.StatusCode);
        Assert.Contains("Content-Type", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Nothing of the patients anywhere: stored state (raw bytes on disk), logs, answers, the audit trail.
        var audit = await AuditedAsync("study.store");
        Assert.Contains("study.store", audit, StringComparison.Ordinal);
        // A *.tmp file is a grain state write in flight (the job still answering): it is renamed over the file it
        // replaces, which is read here too.
        var stored = Directory.GetFiles(_data, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".tmp", StringComparison.Ordinal))
            .Select(f => Encoding.Latin1.GetString(File.ReadAllBytes(f)));
        var metrics = await _http.GetStringAsync("/metrics");
        var seen = string.Join("\n", [.. stored, _node.Output, body, answer.ToJsonString(), detail.ToJsonString(), audit, results, metrics]);
        foreach (var identity in identities)
        {
            // As a value of its own: a short id (MR_small's patient id has 4 characters) turns up by chance inside
            // encrypted data's base64 or a hash, which is not a leak.
            var pattern = "(?<![A-Za-z0-9+/=])" + System.Text.RegularExpressions.Regex.Escape(identity) + "(?![A-Za-z0-9+/=])";
            var found = System.Text.RegularExpressions.Regex.Match(seen, pattern);
            Assert.False(found.Success, $"'{identity}' found at {found.Index}: {(found.Success ? seen.Substring(Math.Max(0, found.Index - 80), Math.Min(160, seen.Length - Math.Max(0, found.Index - 80))) : "")}");
        }
    }

    /// <summary>The audit trail once it holds <paramref name="action"/> (the node appends in batches, within a second).</summary>
    private async Task<string> AuditedAsync(string action)
    {
        for (var attempt = 0; ; attempt++)
        {
            var audit = await _http.GetStringAsync($"/api/audit?format=jsonl&action={action}");
            if (audit.Contains(action, StringComparison.Ordinal) || attempt == 50)
            {
                return await _http.GetStringAsync("/api/audit?format=jsonl");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>The patient name, id, birth date and UIDs of a test file, read with GDCM.</summary>
    private static IEnumerable<string> Identifiers(byte[] file)
    {
        var path = Path.Combine(Paths.TempDirectory("stow-id"), "f.dcm");
        File.WriteAllBytes(path, file);
        using var reader = new gdcm.Reader();
        reader.SetFileName(path);
        Assert.True(reader.Read());
        using var strings = new gdcm.StringFilter();
        strings.SetFile(reader.GetFile());
        foreach (var (g, e) in new (ushort, ushort)[] { (0x0010, 0x0010), (0x0010, 0x0020), (0x0010, 0x0030), (0x0008, 0x0018), (0x0020, 0x000D), (0x0020, 0x000E) })
        {
            var tag = new gdcm.Tag(g, e);
            if (reader.GetFile().GetDataSet().FindDataElement(tag))
            {
                yield return strings.ToString(tag).Trim().TrimEnd('\0').Trim();
            }
        }
    }
}
