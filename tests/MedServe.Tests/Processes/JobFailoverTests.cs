using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>
/// An async job survives a kill -9 of the silo that runs it: two real silo processes on a real Redis, a CSV job of
/// real patient records, the job's silo killed mid-way; the job completes on the survivor with every item answered
/// exactly once and every answer right.
/// </summary>
public sealed class JobFailoverTests
{
    private static readonly TimeSpan CompletionBound = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task A_job_survives_a_silo_kill_with_every_item_answered_exactly_once()
    {
        await using var redis = await RedisProcess.StartAsync();
        var dataA = Paths.TempDirectory("jobs-a");
        var dataB = Paths.TempDirectory("jobs-b");
        try
        {
            var ports = new[] { NodeProcess.FreePort(), NodeProcess.FreePort() };
            var a = await NodeProcess.StartAsync(dataA, Paths.Samples, NodeProcess.FreePort(), ports[0], NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu");
            var b = await NodeProcess.StartAsync(dataB, "none", NodeProcess.FreePort(), ports[1], NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu");
            await using var _a = a;
            await using var _b = b;
            var deployed = await NodeFixture.SuccessJsonAsync(a.Http.PutAsJsonAsync("/api/deployments/breast-cancer-logreg/1?wait=true", new { replicas = 2, accelerator = "cpu" }));
            Assert.Equal("Ready", deployed["state"]!.GetValue<string>());

            var rows = TestData.BreastCancer();
            var lines = File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Where(l => l.Length > 0).ToArray();
            const int total = 100_000; // long enough to be killed mid-job with 32 deliveries of 1024 rows open at once
            var csv = new StringBuilder("id," + lines[0] + "\n");
            for (var i = 0; i < total; i++)
            {
                csv.Append(CultureInfo.InvariantCulture, $"r{i},{lines[1 + (i % rows.Count)]}\n");
            }
            var columns = Uri.EscapeDataString(string.Join(',', lines[0].Split(',').Take(30)));
            using var submitted = await a.Http.PostAsync($"/api/jobs?model=breast-cancer-logreg&id=survivor&columns={columns}&outputs=probabilities",
                new StringContent(csv.ToString(), Encoding.UTF8, "text/csv"));
            Assert.True(submitted.StatusCode == System.Net.HttpStatusCode.Accepted,
                $"submit answered {(int)submitted.StatusCode}: {await submitted.Content.ReadAsStringAsync()}\n{a.Output}");

            // Once the job has answered some items, kill -9 the silo its grain runs on.
            JsonNode job;
            do
            {
                await Task.Delay(20);
                job = (await a.Http.GetFromJsonAsync<JsonNode>("/api/jobs/survivor"))!;
            }
            while (job["succeeded"]!.GetValue<int>() == 0);
            Assert.Equal("Running", job["state"]!.GetValue<string>());
            var answeredAtKill = job["succeeded"]!.GetValue<int>();
            var hostPort = int.Parse(job["silo"]!.GetValue<string>().Split(':', '@')[1], CultureInfo.InvariantCulture);
            var (victim, survivor) = hostPort == ports[0] ? (a, b) : (b, a);
            await victim.KillAsync();

            var started = DateTime.UtcNow;
            while (true)
            {
                try
                {
                    job = (await survivor.Http.GetFromJsonAsync<JsonNode>("/api/jobs/survivor"))!;
                    if (job["state"]!.GetValue<string>() != "Running")
                    {
                        break;
                    }
                }
                catch (HttpRequestException)
                {
                    // The survivor's calls to the dead silo fail until membership declares it dead.
                }
                Assert.True(DateTime.UtcNow - started < CompletionBound, $"the job did not complete within {CompletionBound.TotalSeconds} s of the kill: {job}");
                await Task.Delay(250);
            }

            Assert.True(answeredAtKill < total, "the kill landed mid-job");
            Assert.Equal("Completed", job["state"]!.GetValue<string>());
            Assert.Equal(total, job["succeeded"]!.GetValue<int>());
            Assert.Equal(0, job["failed"]!.GetValue<int>());
            Assert.StartsWith($"127.0.0.1:{(victim == a ? ports[1] : ports[0])}@", job["silo"]!.GetValue<string>(), StringComparison.Ordinal);

            var results = (await NodeFixture.SuccessJsonAsync(survivor.Http.GetAsync("/api/jobs/survivor/results")))["results"]!.AsArray();
            Assert.Equal(total, results.Count);
            var ids = results.Select(r => r!["id"]!.GetValue<string>()).ToArray();
            Assert.Equal(total, ids.Distinct().Count());
            for (var i = 0; i < total; i++)
            {
                Assert.Equal($"r{i}", ids[i]);
                var p = results[i]!["outputs"]![0]!["data"]![1]!.GetValue<double>();
                Assert.Equal(rows[i % rows.Count].PBenignLogreg, p, 4);
            }
        }
        finally
        {
            Directory.Delete(dataA, recursive: true);
            Directory.Delete(dataB, recursive: true);
        }
    }
}
