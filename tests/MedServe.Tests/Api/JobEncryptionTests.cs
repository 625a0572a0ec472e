using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>
/// Job data at rest on the real embedded node: the state files of a job hold no input value and no item id (in text,
/// as float32 bytes, or inside any base64 string), yet its results come back right, decrypted. A key rotation adds a
/// key that new jobs are encrypted with, while a job encrypted before stays readable.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed partial class JobEncryptionTests(NodeFixture node)
{
    // Within the range the model's manifest declares for 'mean radius' (5.23-35.2): CSV jobs refuse values outside it.
    private const float Marker = 27.18281f;
    private const string MarkerText = "27.1828";

    private static string[] Lines => File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Where(l => l.Length > 0).ToArray();

    private static string FeatureColumns => string.Join(',', Lines[0].Split(',').Take(30));

    /// <summary>A CSV job of real records whose first feature is the marker, with ids that name the job.</summary>
    private async Task<string> SubmitMarkedJobAsync(string jobId, int rows)
    {
        var csv = new StringBuilder("id," + Lines[0] + "\n");
        for (var r = 0; r < rows; r++)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{jobId}-patient-{r},{MarkedRecord(r)}\n");
        }
        using var response = await node.Http.PostAsync($"/api/jobs?model=breast-cancer-logreg&id={jobId}&columns={Uri.EscapeDataString(FeatureColumns)}&outputs=probabilities",
            new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"));
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"submit answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        for (var i = 0; i < 600; i++)
        {
            var job = (await node.GetJsonAsync($"/api/jobs/{jobId}")).Body!;
            if (job["state"]!.GetValue<string>() == "Completed")
            {
                return jobId;
            }
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"job {jobId} did not complete");
    }

    /// <summary>The model's answer to one record over V2, to compare the job's (decrypted) results with.</summary>
    private async Task<double[]> OnlineAsync(int row)
    {
        var features = Lines[1 + row].Split(',').Take(30).Select(c => double.Parse(c, CultureInfo.InvariantCulture)).ToArray();
        features[0] = Marker;
        var body = new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = features } }, outputs = new[] { new { name = "probabilities" } } };
        var answer = await NodeFixture.SuccessJsonAsync(node.Http.PostAsJsonAsync("/v2/models/breast-cancer-logreg/infer", body));
        return [.. answer["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>())];
    }

    private string[] StateFilesOf(string jobId) =>
        Directory.GetFiles(Path.Combine(node.DataDirectory, "state"), $"{jobId}.*", SearchOption.AllDirectories);

    /// <summary>
    /// Asserts that stored bytes hold neither the marker (as text or float32 bytes) nor an item id, in clear or inside
    /// any base64 string (tensors and sealed chunks are base64 in JSON); answers how many base64 strings it opened.
    /// </summary>
    internal static int AssertHoldsNoMarker(string where, byte[] raw, string itemIdPrefix)
    {
        var forbidden = new[] { Encoding.UTF8.GetBytes(MarkerText), BitConverter.GetBytes(Marker), Encoding.UTF8.GetBytes(itemIdPrefix) };
        foreach (var needle in forbidden)
        {
            Assert.True(raw.AsSpan().IndexOf(needle) < 0, $"{where} holds '{Encoding.UTF8.GetString(needle)}' in clear");
        }
        var decoded = 0;
        foreach (Match m in Base64String().Matches(Encoding.UTF8.GetString(raw)))
        {
            var bytes = new byte[m.Groups[1].Length];
            if (!Convert.TryFromBase64String(m.Groups[1].Value, bytes, out var n))
            {
                continue;
            }
            decoded++;
            foreach (var needle in forbidden)
            {
                Assert.True(bytes.AsSpan(0, n).IndexOf(needle) < 0, $"{where} holds the marker inside a base64 string");
            }
        }
        return decoded;
    }

    /// <summary>A CSV line of a real record whose first feature is the marker.</summary>
    internal static string MarkedRecord(int row)
    {
        var cells = Lines[1 + row].Split(',');
        cells[0] = "27.18281";
        return string.Join(',', cells);
    }

    internal static string Header => Lines[0];

    internal static string Columns => FeatureColumns;

    [GeneratedRegex("\"([A-Za-z0-9+/]{16,}={0,2})\"")]
    private static partial Regex Base64String();

    [Fact]
    public async Task The_stored_job_holds_no_input_value_or_item_id_yet_its_results_decrypt()
    {
        const string jobId = "sealed-7781";
        const int rows = 40;
        await SubmitMarkedJobAsync(jobId, rows);

        var jobFiles = StateFilesOf(jobId);
        Assert.Contains(jobFiles, f => f.Contains(".job-items-0.", StringComparison.Ordinal));
        Assert.Contains(jobFiles, f => f.Contains(".job-results-0-0.", StringComparison.Ordinal));

        var decoded = 0;
        // A *.tmp file is a write in flight (its content lands in the file it is renamed over, which is read too).
        foreach (var file in Directory.GetFiles(Path.Combine(node.DataDirectory, "state"), "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".tmp", StringComparison.Ordinal)))
        {
            decoded += AssertHoldsNoMarker(file, File.ReadAllBytes(file), $"{jobId}-patient-");
        }
        Assert.True(decoded >= 2, "the job's sealed chunks were looked into");

        // The values went through encryption and back: the job's answers are the model's answers to the marked records.
        var results = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{jobId}/results")))["results"]!.AsArray();
        Assert.Equal(rows, results.Count);
        for (var r = 0; r < rows; r += 13)
        {
            Assert.Equal($"{jobId}-patient-{r}", results[r]!["id"]!.GetValue<string>());
            var expected = await OnlineAsync(r);
            var got = results[r]!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            Assert.Equal(expected, got);
        }
    }

    [Fact]
    public async Task A_rotated_key_encrypts_new_jobs_and_jobs_encrypted_before_stay_readable()
    {
        var before = await SubmitMarkedJobAsync("before-rotation", 5);
        var rotated = await NodeFixture.SuccessJsonAsync(node.Http.PostAsync("/api/admin/data-protection/rotate", null));
        var keyId = Guid.Parse(rotated["id"]!.GetValue<string>());
        // The embedded node is the only reader of its ring: the new key is in use when the rotation answers.
        Assert.True(rotated["default"]!.GetValue<bool>(), $"the new key is the default: {rotated}");
        var keys = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync("/api/admin/data-protection/keys"))).AsArray();
        Assert.True(keys.Count >= 2, $"the old key stays in the ring: {keys}");
        Assert.Equal(keyId, Guid.Parse(keys.Single(k => k!["default"]!.GetValue<bool>())!["id"]!.GetValue<string>()));

        var after = await SubmitMarkedJobAsync("after-rotation", 5);
        Assert.Equal(keyId, KeyIdOf(after));
        Assert.NotEqual(keyId, KeyIdOf(before));
        foreach (var id in new[] { before, after })
        {
            var results = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{id}/results")))["results"]!.AsArray();
            Assert.Equal(5, results.Count);
            Assert.Equal(await OnlineAsync(4), results[4]!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray());
        }
    }

    /// <summary>The key a job's first item chunk was encrypted with: a Data Protection payload names it after its 4-byte magic header.</summary>
    private Guid KeyIdOf(string jobId)
    {
        var file = StateFilesOf(jobId).Single(f => f.Contains(".job-items-0.", StringComparison.Ordinal));
        var sealedBytes = Convert.FromBase64String(JsonNode.Parse(File.ReadAllText(file))!["state"]!["sealed"]!.GetValue<string>());
        return new Guid(sealedBytes.AsSpan(4, 16));
    }
}
