using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>kill -9 of a silo under a steady stream of requests: nothing hangs, failures are retryable, service returns.</summary>
public sealed class FailoverTests
{
    private static readonly TimeSpan RequestBound = TimeSpan.FromSeconds(15);

    /// <summary>How long after a kill -9 the deployment must serve again (death detection is tuned to seconds).</summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Killing_a_silo_under_load_loses_no_request_silently_and_its_replica_comes_back_on_a_survivor()
    {
        await using var redis = await RedisProcess.StartAsync();
        var dataA = Paths.TempDirectory("failover-a");
        var dataB = Paths.TempDirectory("failover-b");
        try
        {
            var siloPortA = NodeProcess.FreePort();
            await using var a = await NodeProcess.StartAsync(dataA, Paths.Samples, NodeProcess.FreePort(), siloPortA, NodeProcess.FreePort(),
                "--cluster", redis.Url, "--accelerator", "cpu");
            var b = await NodeProcess.StartAsync(dataB, "none", NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(),
                "--cluster", redis.Url, "--accelerator", "cpu");
            await using var _ = b;
            a.Http.Timeout = RequestBound;
            // Placement reads capability tags from each silo's metadata cache: let both silos learn each other's.
            await WhenBothSilosTaggedAsync(a);
            await WhenBothSilosTaggedAsync(b);

            var deployed = await NodeFixture.SuccessJsonAsync(a.Http.PutAsJsonAsync("/api/deployments/breast-cancer-logreg/1?wait=true", new { replicas = 2, accelerator = "cpu" }));
            Assert.Equal("Ready", deployed["state"]!.GetValue<string>());
            var silosBefore = deployed["replicas"]!.AsArray().Select(r => r!["silo"]!.GetValue<string>()).ToHashSet();
            Assert.Equal(2, silosBefore.Count); // spread over both silos
            var siloA = silosBefore.Single(address => address.StartsWith($"127.0.0.1:{siloPortA}@", StringComparison.Ordinal));

            var row = TestData.BreastCancer()[0];
            var request = new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = row.Features } } };
            var outcomes = new List<(int Status, bool RetryAfter, TimeSpan Took)>();
            // 100 requests before the kill, then until 50 answers in a row succeed, for at most RecoveryBound.
            long killedAt = 0;
            for (var i = 0; ; i++)
            {
                if (i == 100)
                {
                    await b.KillAsync();
                    killedAt = Stopwatch.GetTimestamp();
                }
                var started = Stopwatch.GetTimestamp();
                using var response = await a.Http.PostAsJsonAsync("/v2/models/breast-cancer-logreg/infer", request);
                outcomes.Add(((int)response.StatusCode, response.Headers.Contains("Retry-After"), Stopwatch.GetElapsedTime(started)));
                if (killedAt != 0 && outcomes.Count > 150 && outcomes.TakeLast(50).All(o => o.Status == 200))
                {
                    break;
                }
                if (killedAt != 0 && Stopwatch.GetElapsedTime(killedAt) > RecoveryBound)
                {
                    break;
                }
            }

            Assert.All(outcomes, o => Assert.True(o.Status == 200 || (o.Status == 503 && o.RetryAfter), $"status {o.Status}, Retry-After {o.RetryAfter}"));
            Assert.All(outcomes, o => Assert.True(o.Took < RequestBound, $"a request took {o.Took}"));
            Assert.True(outcomes.TakeLast(50).All(o => o.Status == 200), $"service came back on the surviving silo within {RecoveryBound.TotalSeconds} s");

            var after = await NodeFixture.SuccessJsonAsync(a.Http.GetAsync("/api/deployments/breast-cancer-logreg/1"));
            Assert.Equal("Ready", after["state"]!.GetValue<string>());
            Assert.All(after["replicas"]!.AsArray(), r => Assert.Equal(siloA, r!["silo"]!.GetValue<string>()));
        }
        finally
        {
            Directory.Delete(dataA, recursive: true);
            Directory.Delete(dataB, recursive: true);
        }
    }

    /// <summary>A newly joined silo's tags reach the others' metadata caches within moments; wait for that, bounded.</summary>
    private static async Task WhenBothSilosTaggedAsync(NodeProcess node)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;
        while (true)
        {
            var silos = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync("/api/silos"))).AsArray();
            if (silos.Count(s => s!["status"]!.GetValue<string>() == "Active" && s["accelerator"] is not null) == 2)
            {
                return;
            }
            Assert.True(Stopwatch.GetTimestamp() < deadline, "the two silos did not see each other's tags within 30 s");
            await Task.Delay(100);
        }
    }
}
