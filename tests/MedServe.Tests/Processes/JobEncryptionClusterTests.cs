using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Api;
using MedServe.Tests.Support;
using StackExchange.Redis;

namespace MedServe.Tests.Processes;

/// <summary>
/// Job data at rest in a cluster: two silo processes on a real Redis share one Data Protection key ring (kept in
/// Redis through grain storage). A job's data in Redis holds no input value; after the silo that ran the job stops,
/// the other silo reactivates it and decrypts its results with the shared ring.
/// </summary>
public sealed class JobEncryptionClusterTests
{
    [Fact]
    public async Task A_job_encrypted_by_one_silo_is_read_by_another_and_redis_holds_no_input_value()
    {
        await using var redis = await RedisProcess.StartAsync();
        var dataA = Paths.TempDirectory("crypt-a");
        var dataB = Paths.TempDirectory("crypt-b");
        try
        {
            var ports = new[] { NodeProcess.FreePort(), NodeProcess.FreePort() };
            var a = await NodeProcess.StartAsync(dataA, Paths.Samples, NodeProcess.FreePort(), ports[0], NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu");
            var b = await NodeProcess.StartAsync(dataB, "none", NodeProcess.FreePort(), ports[1], NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu");
            await using var _a = a;
            await using var _b = b;
            var deployed = await NodeFixture.SuccessJsonAsync(a.Http.PutAsJsonAsync("/api/deployments/breast-cancer-logreg/1?wait=true", new { replicas = 2, accelerator = "cpu" }));
            Assert.Equal("Ready", deployed["state"]!.GetValue<string>());

            const int rows = 30;
            var csv = new StringBuilder("id," + JobEncryptionTests.Header + "\n");
            for (var r = 0; r < rows; r++)
            {
                csv.Append(CultureInfo.InvariantCulture, $"crypt-patient-{r},{JobEncryptionTests.MarkedRecord(r)}\n");
            }
            using (var submitted = await a.Http.PostAsync($"/api/jobs?model=breast-cancer-logreg&id=crypt&columns={Uri.EscapeDataString(JobEncryptionTests.Columns)}&outputs=probabilities",
                new StringContent(csv.ToString(), Encoding.UTF8, "text/csv")))
            {
                Assert.True(submitted.StatusCode == System.Net.HttpStatusCode.Accepted, $"submit answered {(int)submitted.StatusCode}: {await submitted.Content.ReadAsStringAsync()}");
            }
            JsonNode job;
            var started = DateTime.UtcNow;
            do
            {
                Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(60), "the job did not complete");
                await Task.Delay(100);
                job = (await a.Http.GetFromJsonAsync<JsonNode>("/api/jobs/crypt"))!;
            }
            while (job["state"]!.GetValue<string>() != "Completed");
            var before = (await NodeFixture.SuccessJsonAsync(a.Http.GetAsync("/api/jobs/crypt/results")))["results"]!.ToJsonString();

            // Every value in Redis (membership, state, the key ring): no marker, no item id, in clear or in base64.
            await using (var connection = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{redis.Port}"))
            {
                var db = connection.GetDatabase();
                var jobKeys = 0;
                foreach (var key in connection.GetServer("127.0.0.1", redis.Port).Keys(pattern: "*"))
                {
                    jobKeys += key.ToString().Contains("crypt", StringComparison.Ordinal) ? 1 : 0;
                    var type = await db.KeyTypeAsync(key);
                    var values = type switch
                    {
                        RedisType.String => [(byte[])(await db.StringGetAsync(key))!],
                        RedisType.Hash => (await db.HashGetAllAsync(key)).Select(e => (byte[])e.Value!).ToArray(),
                        _ => Array.Empty<byte[]>(),
                    };
                    foreach (var value in values)
                    {
                        JobEncryptionTests.AssertHoldsNoMarker($"redis key {key}", value, "crypt-patient-");
                    }
                }
                Assert.True(jobKeys >= 2, "the job's chunks are in Redis");
            }

            // Stop the silo the job lives on: the other reactivates it, reads its chunks and decrypts them.
            var hostPort = int.Parse(job["silo"]!.GetValue<string>().Split(':', '@')[1], CultureInfo.InvariantCulture);
            var (owner, other) = hostPort == ports[0] ? (a, b) : (b, a);
            await owner.StopGracefullyAsync();
            JsonNode results;
            started = DateTime.UtcNow;
            while (true)
            {
                using var response = await other.Http.GetAsync("/api/jobs/crypt/results");
                if (response.IsSuccessStatusCode)
                {
                    results = (await NodeFixture.ReadJsonAsync(response))!;
                    break;
                }
                Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30), $"the other silo did not answer: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}\n{other.Output}");
                await Task.Delay(250);
            }
            Assert.Equal(before, results["results"]!.ToJsonString());
            Assert.Equal(rows, results["results"]!.AsArray().Count);
            Assert.Equal("crypt-patient-29", results["results"]![29]!["id"]!.GetValue<string>());
            var silo = (await other.Http.GetFromJsonAsync<JsonNode>("/api/jobs/crypt"))!["silo"]!.GetValue<string>();
            Assert.StartsWith($"127.0.0.1:{(owner == a ? ports[1] : ports[0])}@", silo, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dataA, recursive: true);
            Directory.Delete(dataB, recursive: true);
        }
    }
}
