using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Dashboard.Security;
using MedServe.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Api;

/// <summary>
/// The audit trail end to end: actions over HTTP land in it with key ids and input hashes (never inputs), its chain
/// verifies through the API and the CLI, and a record edited on disk is found and named after a restart.
/// </summary>
public sealed class AuditTests : IAsyncLifetime
{
    private readonly string _data = Paths.TempDirectory("audit");
    private readonly int _gateway = NodeProcess.FreePort();
    private WebApplication _app = null!;
    private HttpClient _http = null!;

    public Task InitializeAsync() => StartAsync();

    private async Task StartAsync()
    {
        Uri address;
        (_app, address) = await InProcessNode.StartAsync(_data, Path.Combine(Paths.Samples, "diabetes-linear"), _gateway);
        _http = new HttpClient { BaseAddress = address };
        _http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
    }

    private async Task StopAsync()
    {
        _http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    public async Task DisposeAsync()
    {
        await StopAsync();
        Directory.Delete(_data, recursive: true);
    }

    private Task<CliRun.Result> VerifyWithCliAsync(string key) =>
        CliRun.RunAsync("audit", "verify", "--gateway", $"127.0.0.1:{_gateway}", "--key", key);

    [Fact]
    public async Task Actions_are_recorded_by_key_and_input_hash_and_an_edited_record_is_named()
    {
        // An inference with a marker value, a failed one, a scale, and a key: each lands in the trail.
        const string body = """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61.424242,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""";
        using (var ok = await _http.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(body, Encoding.UTF8, "application/json")))
        {
            Assert.True(ok.IsSuccessStatusCode);
        }
        using (var bad = await _http.PostAsync("/v2/models/diabetes-linear/infer", new StringContent("""{"inputs":[{"name":"nope-73.737373"}]}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(400, (int)bad.StatusCode);
        }
        // A version in the path is whatever the caller wrote: the trail keeps it only when it is a valid version.
        using (var junk = await _http.PostAsync("/v2/models/diabetes-linear/versions/Jane%20Doe%201970/infer", new StringContent(body, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(404, (int)junk.StatusCode);
        }
        await NodeFixture.SuccessJsonAsync(_http.PutAsJsonAsync("/api/deployments/diabetes-linear/1?wait=true", new { replicas = 1 }));
        var created = await NodeFixture.SuccessJsonAsync(_http.PostAsJsonAsync("/api/keys", new { name = "auditor", role = "admin" }));
        var auditorKey = created["key"]!.GetValue<string>();
        await _app.Services.GetRequiredService<AuditWriter>().FlushAsync();

        var lines = (await _http.GetStringAsync("/api/audit?format=jsonl")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var records = lines.Select(l => JsonNode.Parse(l)!).ToArray();
        var infers = records.Where(r => r["event"]!["action"]!.GetValue<string>() == AuditActions.Infer).ToArray();
        Assert.Equal(3, infers.Length);
        Assert.Equal("(unknown)", infers[2]["event"]!["version"]!.GetValue<string>());
        Assert.Equal(AuditChain.InputHash(Encoding.UTF8.GetBytes(body)), infers[0]["event"]!["input_sha256"]!.GetValue<string>());
        Assert.Equal("admin-env", infers[0]["event"]!["actor"]!.GetValue<string>());
        Assert.Equal("1", infers[0]["event"]!["version"]!.GetValue<string>());
        Assert.Equal("ok", infers[0]["event"]!["outcome"]!.GetValue<string>());
        Assert.Equal(nameof(ErrorKind.InvalidInput), infers[1]["event"]!["outcome"]!.GetValue<string>());
        Assert.Contains(records, r => r["event"]!["action"]!.GetValue<string>() == AuditActions.Scale);
        Assert.Contains(records, r => r["event"]!["action"]!.GetValue<string>() == AuditActions.KeyCreate);
        var all = string.Join("\n", lines);
        Assert.DoesNotContain("61.424242", all, StringComparison.Ordinal);
        Assert.DoesNotContain("73.737373", all, StringComparison.Ordinal);
        Assert.DoesNotContain("Jane", all, StringComparison.Ordinal);
        Assert.DoesNotContain(auditorKey, all, StringComparison.Ordinal);

        var verified = await NodeFixture.SuccessJsonAsync(_http.GetAsync("/api/audit/verify"));
        Assert.True(verified["ok"]!.GetValue<bool>(), verified.ToJsonString());
        var cli = await VerifyWithCliAsync(auditorKey);
        Assert.True(cli.Code == 0, cli.Err);
        Assert.Equal(6, (await CliRun.RunAsync("audit", "verify", "--gateway", $"127.0.0.1:{_gateway}", "--key", "msk_000000000000_nope")).Code);

        // Someone edits record 2 in storage (its outcome), with the node stopped; after a restart the chain names it.
        await StopAsync();
        var chunk = Directory.EnumerateFiles(_data, "*.audit-chunk.json", SearchOption.AllDirectories).Single();
        var stored = JsonNode.Parse(await File.ReadAllTextAsync(chunk))!;
        var second = FindRecords(stored)!.First(r => r!["Seq"]?.GetValue<long>() == 2 || r!["seq"]?.GetValue<long>() == 2)!;
        var e = second["Event"] ?? second["event"];
        var outcome = e!["Outcome"] is not null ? "Outcome" : "outcome";
        e[outcome] = "tampered";
        await File.WriteAllTextAsync(chunk, stored.ToJsonString());
        await StartAsync();
        var broken = await VerifyWithCliAsync(auditorKey);
        Assert.Equal(7, broken.Code);
        Assert.Contains("record 2", broken.Err, StringComparison.Ordinal);
        Assert.Contains("edited", broken.Err, StringComparison.Ordinal);
    }

    private static JsonArray? FindRecords(JsonNode? node) => node switch
    {
        JsonObject o => o.Select(p => p.Key.Equals("records", StringComparison.OrdinalIgnoreCase) && p.Value is JsonArray a ? a : FindRecords(p.Value)).FirstOrDefault(a => a is not null),
        _ => null,
    };

    [Fact]
    public async Task A_trail_over_several_chunks_reads_back_whole_after_its_full_chunks_leave_memory()
    {
        // Full chunks deactivate once written; reading the trail brings them back from storage, chain intact.
        var trail = _app.Services.GetRequiredService<IGrainFactory>().GetGrain<IAuditLogGrain>(0);
        var (before, _) = await trail.HeadAsync();
        var at = DateTimeOffset.UnixEpoch;
        foreach (var size in new[] { 700, 400, 100, 2000, 2000 })
        {
            await trail.AppendAsync([.. Enumerable.Range(0, size).Select(i => new AuditEvent { At = at.AddSeconds(i), Actor = "k", Action = AuditActions.Infer, InputSha256 = $"h{i}" })]);
        }
        var (count, last) = await trail.HeadAsync();
        Assert.Equal(before + 5200, count);
        var records = await trail.ReadAsync(1, (int)count);
        Assert.Equal(count, records.Length);
        Assert.Null(AuditChain.Verify(records, count, last));
        // Newest first (the web app's search), over more than one page of the trail: every record once, in reverse.
        var seqs = new List<long>();
        await foreach (var r in MedServe.Dashboard.Management.AuditEndpoints.ReadNewestFirstAsync(_app.Services.GetRequiredService<IGrainFactory>()))
        {
            seqs.Add(r.Seq);
        }
        Assert.Equal(Enumerable.Range(1, (int)count).Reverse().Select(i => (long)i), seqs);

        // Reading brought the full chunks back into memory; they leave again (only the chunk being appended to stays).
        await Activations.AssertBackToAsync(_app.Services.GetRequiredService<IGrainFactory>(), "AuditChunkGrain", 1);
    }

    [Fact]
    public void The_chain_names_an_edited_a_removed_a_reordered_and_a_cut_off_record()
    {
        var records = new List<AuditRecord>();
        var prev = AuditChain.Genesis;
        for (var i = 1; i <= 5; i++)
        {
            var r = AuditChain.Seal(i, new AuditEvent { At = DateTimeOffset.UnixEpoch.AddSeconds(i), Actor = "k", Action = AuditActions.Infer, InputSha256 = $"h{i}" }, prev);
            records.Add(r);
            prev = r.Hash;
        }
        Assert.Null(AuditChain.Verify(records, 5, prev));

        var edited = records.ToList();
        edited[2] = edited[2] with { Event = edited[2].Event with { Actor = "someone else" } };
        Assert.Contains("record 3 does not match its hash: edited", AuditChain.Verify(edited, 5, prev), StringComparison.Ordinal);

        var rehashed = records.ToList();
        rehashed[2] = AuditChain.Seal(3, rehashed[2].Event with { Actor = "someone else" }, rehashed[2].PrevHash);
        Assert.Contains("record 4 does not follow record 3", AuditChain.Verify(rehashed, 5, prev), StringComparison.Ordinal);

        var removed = records.Where(r => r.Seq != 3).ToList();
        Assert.Contains("record 3 is missing", AuditChain.Verify(removed, 5, prev), StringComparison.Ordinal);

        var reordered = records.ToList();
        (reordered[1], reordered[2]) = (reordered[2], reordered[1]);
        Assert.Contains("reordered", AuditChain.Verify(reordered, 5, prev), StringComparison.Ordinal);

        Assert.Contains("records 5..5 removed", AuditChain.Verify(records.Take(4), 5, prev), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("k1", "infer", "breast-cancer-logreg", "1", "ok", null)]
    [InlineData("quote\" back\\slash", "<script>&'", "ünïcødé-模型", "", "InvalidInput", "line\nbreak\u0001")]
    public void A_records_hash_is_the_sha256_of_the_json_array_of_its_fields_so_trails_written_before_still_verify(
        string actor, string action, string model, string version, string outcome, string? detail)
    {
        var e = new AuditEvent
        {
            At = new DateTimeOffset(2026, 12, 1, 18, 30, 5, 123, TimeSpan.FromHours(2)).AddTicks(4567),
            Actor = actor, Action = action, Model = model, Version = version, InputSha256 = null, Outcome = outcome, Detail = detail,
        };
        foreach (var seq in new[] { 1L, 512L, long.MaxValue })
        {
            // The definition the first trails were written with.
            string[] fields =
            [
                seq.ToString(System.Globalization.CultureInfo.InvariantCulture), e.At.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                e.Actor, e.Action, e.Model ?? "", e.Version ?? "", e.InputSha256 ?? "", e.Outcome, e.Detail ?? "", AuditChain.Genesis,
            ];
            var expected = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(fields)));
            Assert.Equal(expected, AuditChain.HashOf(seq, e, AuditChain.Genesis));
        }
    }
}
