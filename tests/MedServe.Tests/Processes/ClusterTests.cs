using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MedServe.Client;
using MedServe.Tests.Support;
using Xunit.Abstractions;

namespace MedServe.Tests.Processes;

/// <summary>
/// Real silo processes joined through a real redis-server on loopback: placement by tag across processes, silos
/// joining, leaving gracefully and crashing under a steady stream of V2 requests, and Redis restarting.
/// </summary>
public sealed class ClusterTests(ITestOutputHelper output)
{
    /// <summary>
    /// How long after a silo leaves or dies its replicas must be Ready elsewhere and requests succeed again. Death
    /// detection is tuned to seconds (ClusterHosting); this bound is generous for a loaded two-core machine.
    /// </summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(45);

    private const string CpuModel = "breast-cancer-logreg";
    private const string GpuModel = "ct-mr-classifier";

    [Fact]
    public async Task Silos_join_leave_gracefully_and_crash_under_load_while_replicas_move_only_to_compatible_silos()
    {
        await using var redis = await RedisProcess.StartAsync();
        await using var cluster = new Cluster(redis);

        // Two silos: a cpu one that imports the samples, a gpu one that has never seen them.
        var (a, g) = (cluster.StartAsync("a", "cpu", Paths.Samples, "--label", "zone=a"), cluster.StartAsync("g", "gpu", "none", "--label", "zone=b"));
        var (nodeA, nodeG) = (await a, await g);
        await WhenSilosAsync(nodeA.Node, 2);
        await WhenSilosAsync(nodeG.Node, 2);
        var silos = await SilosAsync(nodeA.Node);
        Assert.Equal("b", silos.Single(s => s!["address"]!.GetValue<string>() == Address(silos, nodeG))!["labels"]!["zone"]!.GetValue<string>());
        Assert.Equal("configured", silos.Single(s => s!["address"]!.GetValue<string>() == Address(silos, nodeG))!["accelerator_source"]!.GetValue<string>());

        // A gpu-requiring version and a cpu version, two replicas each, deployed through the cpu silo's API.
        var gpu = await DeployAsync(nodeA.Node, GpuModel, "gpu", 2);
        Assert.All(ReplicaSilos(gpu), s => Assert.Equal(Address(silos, nodeG), s));
        var cpu = await DeployAsync(nodeA.Node, CpuModel, "cpu", 2);
        Assert.All(ReplicaSilos(cpu), s => Assert.Equal(Address(silos, nodeA), s));
        // The gpu silo never saw an upload: it fetched the artifact from the cluster, verified it and cached it.
        // (The samples deployed for "any" at import may have landed there too: look for this one's hash.)
        var sha = (await NodeFixture.SuccessJsonAsync(nodeA.Node.Http.GetAsync($"/api/models/{GpuModel}/versions/1")))["version"]!["sha256"]!.GetValue<string>();
        Assert.Contains(Directory.GetFiles(Path.Combine(nodeG.Data, "artifacts"), "*", SearchOption.AllDirectories), f => Path.GetFileName(f) == sha);
        // Either silo's front end reaches the replicas on the gpu silo, with the right answer (slice 6 is MR).
        foreach (var node in new[] { nodeA, nodeG })
        {
            var result = await NodeFixture.SuccessJsonAsync(node.Node.Http.PostAsJsonAsync($"/v2/models/{GpuModel}/infer", GpuRequest));
            Assert.True(result["outputs"]![0]!["data"]![1]!.GetValue<double>() > 0.99, "slice 6 is MR");
        }

        // The grain client and the CLI find the cluster through Redis membership (no gateway address given).
        await using (var client = await MedServeClient.ConnectAsync(new MedServeClientOptions { Cluster = redis.Url }))
        {
            var seen = await client.ListSilosAsync();
            Assert.Equal(2, seen.Length);
            Assert.Contains("ct-mr-classifier/1/0/gpu", seen.Single(s => s.Accelerator == "gpu").Replicas);
            var outputs = await client.InferAsync<float>("ct-mr-classifier", "image", [1, 1, 64, 64], TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32").AsMemory(6 * 4096, 4096));
            Assert.True(outputs["probabilities"].AsSpan<float>()[1] > 0.99f, "slice 6 is MR (grain client)");
        }
        // The CLI presents a stored key (every command checks it): a viewer's, made through the HTTP API.
        var viewerKey = (await NodeFixture.SuccessJsonAsync(nodeA.Node.Http.PostAsJsonAsync("/api/keys", new { name = "cluster-cli", role = "viewer" })))["key"]!.GetValue<string>();
        var status = (await CliRun.RunAsync("--cluster", redis.Url, "--key", viewerKey, "--json", "status", "ct-mr-classifier", "1")).Json();
        Assert.Equal(Address(silos, nodeG), status["replicas"]![0]!["silo"]!.GetValue<string>());
        var cliSilos = await CliRun.RunAsync("--cluster", redis.Url, "--key", viewerKey, "silos");
        Assert.True(cliSilos.Code == 0, cliSilos.ToString());
        Assert.Matches(@"(?m)^\S+\s+\S+\s+Active\s+gpu\s+CPUExecutionProvider\s+zone=b\s+.*ct-mr-classifier/1/0/gpu", cliSilos.Out);
        var wrongId = await CliRun.RunAsync("--cluster", redis.Url, "--cluster-id", "another", "--connect-timeout", "3", "--key", viewerKey, "silos");
        Assert.True(wrongId.Code == 5, wrongId.ToString());

        // A third silo (cpu) and a fourth (gpu) join; scaling up spreads the new replicas onto them.
        var (c, g2) = (cluster.StartAsync("c", "cpu", "none", "--drain-seconds", "2"), cluster.StartAsync("g2", "gpu", "none"));
        var (nodeC, nodeG2) = (await c, await g2);
        await WhenSilosAsync(nodeA.Node, 4);
        silos = await SilosAsync(nodeA.Node);
        cpu = await DeployAsync(nodeA.Node, CpuModel, "cpu", 3);
        Assert.Contains(Address(silos, nodeC), ReplicaSilos(cpu));
        gpu = await DeployAsync(nodeA.Node, GpuModel, "gpu", 3);
        Assert.Contains(Address(silos, nodeG2), ReplicaSilos(gpu));
        AssertPlacementHonoured(await SilosAsync(nodeA.Node));

        await using var load = new InferLoad(
            new("a/cpu", nodeA.Node.Http.BaseAddress!, CpuModel, CpuRequest),
            new("a/gpu", nodeA.Node.Http.BaseAddress!, GpuModel, GpuRequest),
            new("g2/gpu", nodeG2.Node.Http.BaseAddress!, GpuModel, GpuRequest),
            new("c/cpu", nodeC.Node.Http.BaseAddress!, CpuModel, CpuRequest));
        await load.WhenServingAsync("steady load before the stop", 0, RecoveryBound, 20, "a/cpu", "a/gpu", "g2/gpu", "c/cpu");

        // SIGTERM the third silo under load: it drains (still answering), stops listening, then leaves the cluster.
        var stopAt = load.Now;
        var stopping = Stopwatch.StartNew();
        await nodeC.Node.StopGracefullyAsync();
        output.WriteLine($"graceful stop: process exited {stopping.Elapsed.TotalSeconds:F1} s after SIGTERM");
        await WhenPlacedAsync(nodeA.Node, "after the graceful stop", (CpuModel, [Address(silos, nodeA)]), (GpuModel, [Address(silos, nodeG), Address(silos, nodeG2)]));
        var placedAfterStop = load.Now - stopAt;
        var lastFailure = await load.WhenServingAsync("after the graceful stop", stopAt, RecoveryBound, 20, "a/cpu", "a/gpu", "g2/gpu");
        output.WriteLine($"graceful stop: replicas Ready elsewhere {placedAfterStop:F1} s after SIGTERM; last non-200 started {lastFailure:F1} s after it");
        var fromC = load.Outcomes.Where(o => o.Stream == "c/cpu").ToList();
        // Answered while it drains; after the drain (2 s) connections are refused, or reset if they raced the listener
        // closing (queued by the kernel, never read by Kestrel): a caller may retry those elsewhere. Nothing else.
        var drainedAt = stopAt + 1.5; // the drain starts a little after the SIGTERM is sent; margin for a loaded machine
        Assert.All(fromC, o => Assert.True(o.IsAnswered || ((o.Refused || o.Reset) && o.StartedAt >= drainedAt), $"the stopping silo's front end (SIGTERM at {stopAt:F2}s): {o}"));
        Assert.True(fromC.Any(o => o.Status == 200 && o.StartedAt > stopAt), "the stopping silo kept answering while it drained");
        Assert.Contains("Stopping: draining for 2 s", nodeC.Node.Output, StringComparison.Ordinal);
        AssertPlacementHonoured(await SilosAsync(nodeA.Node));

        // kill -9 the first gpu silo under load: its replicas come back on the other gpu silo, never on a cpu one.
        var killAt = load.Now;
        await nodeG.Node.KillAsync();
        await WhenPlacedAsync(nodeA.Node, "after the kill -9", (CpuModel, [Address(silos, nodeA)]), (GpuModel, [Address(silos, nodeG2)]));
        var placedAfterKill = load.Now - killAt;
        lastFailure = await load.WhenServingAsync("after the kill -9", killAt, RecoveryBound, 20, "a/cpu", "a/gpu", "g2/gpu");
        output.WriteLine($"kill -9: replicas Ready elsewhere {placedAfterKill:F1} s after the kill; last non-200 started {lastFailure:F1} s after it");
        AssertPlacementHonoured(await SilosAsync(nodeA.Node));

        var outcomes = load.Outcomes.Where(o => o.Stream != "c/cpu").ToList();
        output.WriteLine($"stop at {stopAt:F2}s, kill at {killAt:F2}s; not 200 or slower than 1 s:\n{string.Join("\n", outcomes.Where(o => o.Status != 200 || o.Took > 1).Take(40))}");
        output.WriteLine($"{outcomes.Count} requests to the surviving front ends: {outcomes.Count(o => o.Status == 200)} answered 200, {outcomes.Count(o => o.Status == 503)} 503; slowest {outcomes.Max(o => o.Took):F2} s");
        Assert.All(outcomes, o => Assert.True(o.IsAnswered, $"every request is answered 200, or 503 with Retry-After: {o}"));
    }

    /// <summary>
    /// A silo saturated by inference still answers its membership probes: 60 s of closed-loop CNN batches (11 slices a
    /// request, more requests in flight than the machine has cores) through both front ends of a two-silo cluster, one
    /// replica on each silo, with death detection as tight as the product runs it (1 s probe timeout, 2 missed probes,
    /// 1 vote: ClusterHosting). ONNX Runtime runs on each silo's execution pool, never on the threads Orleans answers
    /// probes with, so no silo is declared dead: a silo told it is dead stops its process, and both are still up at the
    /// end with the generation they started with, each seeing the other Active; every request was answered 200.
    /// </summary>
    [Fact]
    public async Task Sixty_seconds_of_full_inference_load_on_two_silos_declares_no_silo_dead()
    {
        await using var redis = await RedisProcess.StartAsync();
        await using var cluster = new Cluster(redis);
        var (a, b) = (cluster.StartAsync("a", "cpu", Paths.Samples), cluster.StartAsync("b", "cpu", "none"));
        var (nodeA, nodeB) = (await a, await b);
        await WhenSilosAsync(nodeA.Node, 2);
        await WhenSilosAsync(nodeB.Node, 2);
        var members = (await SilosAsync(nodeA.Node)).Select(s => s!["address"]!.GetValue<string>()).Order().ToArray();
        var deployed = await DeployAsync(nodeA.Node, GpuModel, "cpu", 2);
        Assert.Equal(2, ReplicaSilos(deployed).Distinct().Count());

        var slices = TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32");
        var body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new
        {
            inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { slices.Length / 4096, 1, 64, 64 }, data = slices } },
            outputs = new[] { new { name = "probabilities" } },
        });
        var load = TimeSpan.FromSeconds(60);
        using var stop = new CancellationTokenSource(load);
        var outcomes = new System.Collections.Concurrent.ConcurrentQueue<(int Status, string? Replica, double QueueMs, string? Error)>();
        var started = Stopwatch.StartNew();
        var workers = new[] { nodeA, nodeB }.SelectMany(member => Enumerable.Range(0, 6).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var content = new ByteArrayContent(body);
                    content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                    using var response = await member.Node.Http.PostAsync($"/v2/models/{GpuModel}/infer", content);
                    var answer = await NodeFixture.ReadJsonAsync(response);
                    outcomes.Enqueue(((int)response.StatusCode, answer?["parameters"]?["replica"]?.GetValue<string>(),
                        answer?["parameters"]?["queue_ms"]?.GetValue<double>() ?? 0, response.IsSuccessStatusCode ? null : answer?.ToJsonString()));
                }
                catch (HttpRequestException e)
                {
                    outcomes.Enqueue((0, null, 0, e.Message));
                }
            }
        }))).ToArray();
        await Task.WhenAll(workers);
        var seconds = started.Elapsed.TotalSeconds;

        var all = outcomes.ToList();
        output.WriteLine($"{all.Count} requests ({all.Count * slices.Length / 4096} slices) in {seconds:F0} s; mean queue wait {all.Average(o => o.QueueMs):F1} ms; "
            + string.Join(", ", all.GroupBy(o => o.Replica ?? "(none)").Select(g => $"{g.Key}: {g.Count()}")));
        if (all.Any(o => o.Status != 200))
        {
            // What the front ends logged of it (types and frames, never data): the lead a failure needs.
            foreach (var member in new[] { nodeA, nodeB })
            {
                var lines = member.Node.Output.Split('\n');
                output.WriteLine($"silo {member.Name}:\n" + string.Join("\n", lines.Select((l, i) => (l, i))
                    .Where(x => x.l.Contains("fail:", StringComparison.Ordinal) || x.l.Contains("warn:", StringComparison.Ordinal))
                    .SelectMany(x => lines.Skip(x.i).Take(3))));
            }
        }
        Assert.All(all, o => Assert.True(o.Status == 200, $"every request under load is answered 200: {o}"));
        Assert.Equal(2, all.Select(o => o.Replica).Distinct().Count()); // both silos ran inference
        foreach (var member in new[] { nodeA, nodeB })
        {
            Assert.False(member.Node.HasExited, $"silo {member.Name} stopped under load (a silo declared dead stops itself):\n{member.Node.Output}");
            var seen = await SilosAsync(member.Node);
            Assert.Equal(members, seen.Select(s => s!["address"]!.GetValue<string>()).Order().ToArray());
            Assert.All(seen, s => Assert.Equal("Active", s!["status"]!.GetValue<string>()));
        }
    }

    [Fact]
    public async Task A_brief_Redis_restart_does_not_take_the_cluster_down()
    {
        await using var redis = await RedisProcess.StartPersistentAsync();
        await using var cluster = new Cluster(redis);
        var (a, b) = (cluster.StartAsync("a", "cpu", Paths.Samples), cluster.StartAsync("b", "cpu", "none"));
        var (nodeA, nodeB) = (await a, await b);
        await WhenSilosAsync(nodeA.Node, 2);
        await WhenSilosAsync(nodeB.Node, 2);
        var before = (await SilosAsync(nodeA.Node)).Select(s => s!["address"]!.GetValue<string>()).Order().ToList();
        Assert.Equal(2, ReplicaSilos(await DeployAsync(nodeA.Node, CpuModel, "cpu", 2)).Distinct().Count());

        await using var load = new InferLoad(
            new("a/cpu", nodeA.Node.Http.BaseAddress!, CpuModel, CpuRequest),
            new("b/cpu", nodeB.Node.Http.BaseAddress!, CpuModel, CpuRequest),
            new("b/diabetes", nodeB.Node.Http.BaseAddress!, "diabetes-linear", DiabetesRequest));
        await load.WhenServingAsync("steady load before Redis stops", 0, RecoveryBound, 20, "a/cpu", "b/cpu", "b/diabetes");

        var killAt = load.Now;
        await redis.KillAsync();
        // A deploy needs storage: while Redis is away it is refused as retryable, and changes nothing.
        using (var refused = await nodeA.Node.Http.PutAsJsonAsync("/api/deployments/diabetes-linear/1?wait=true", new { replicas = 2, accelerator = "cpu" }))
        {
            Assert.Equal(503, (int)refused.StatusCode);
            Assert.True(refused.Headers.Contains("Retry-After"), "a refused deploy says when to retry");
        }
        // Operators can still look: each silo lists the cluster from its own membership view, both still Active.
        var silosDuringOutage = await SilosAsync(nodeB.Node);
        Assert.Equal(before, silosDuringOutage.Select(s => s!["address"]!.GetValue<string>()).Order().ToList());
        Assert.All(silosDuringOutage, s => Assert.Equal("Active", s!["status"]!.GetValue<string>()));
        // Both silos have felt the outage (membership table unreadable) before Redis comes back.
        await Task.WhenAll(nodeA.Node.WhenPrinted("Failed to refresh membership table"), nodeB.Node.WhenPrinted("Failed to refresh membership table"))
            .WaitAsync(TimeSpan.FromMinutes(1));
        var feltAt = load.Now;
        var outage = load.Since(killAt);
        foreach (var stream in new[] { "a/cpu", "b/cpu", "b/diabetes" })
        {
            Assert.True(outage.Any(o => o.Stream == stream && o.Status == 200 && o.StartedAt > feltAt - 1),
                $"{stream} was still served {feltAt - killAt:F1} s into the Redis outage");
        }

        await redis.RestartAsync();
        var restartAt = load.Now;
        output.WriteLine($"Redis was away {restartAt - killAt:F1} s; {outage.Count} requests meanwhile, {outage.Count(o => o.Status == 200)} answered 200");
        var lastFailure = await load.WhenServingAsync("after Redis restarted", killAt, RecoveryBound, 20, "a/cpu", "b/cpu", "b/diabetes");
        output.WriteLine($"last non-200 started {lastFailure:F1} s after Redis was killed");

        // Nobody was declared dead or restarted: the same two silo instances, Active, as seen from both.
        foreach (var node in new[] { nodeA, nodeB })
        {
            Assert.False(node.Node.HasExited, $"silo {node.Name} is still running");
            var silos = await SilosAsync(node.Node);
            Assert.Equal(before, silos.Select(s => s!["address"]!.GetValue<string>()).Order().ToList());
            Assert.All(silos, s => Assert.Equal("Active", s!["status"]!.GetValue<string>()));
        }
        // New deploys work, and the one refused during the outage now takes effect.
        var diabetes = await DeployAsync(nodeB.Node, "diabetes-linear", "cpu", 2);
        Assert.Equal(2, ReplicaSilos(diabetes).Distinct().Count());
        Assert.Equal("Ready", (await NodeFixture.SuccessJsonAsync(nodeA.Node.Http.GetAsync($"/api/deployments/{CpuModel}/1")))["state"]!.GetValue<string>());

        var all = load.Outcomes;
        output.WriteLine($"{all.Count} requests in all; slowest {all.Max(o => o.Took):F2} s");
        Assert.All(all, o => Assert.True(o.IsAnswered, $"every request is answered 200, or 503 with Retry-After: {o}"));
    }

    private static readonly object CpuRequest = new
    {
        inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = TestData.BreastCancer()[0].Features } },
    };

    private static readonly object GpuRequest = new
    {
        inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 64, 64 }, data = TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32").AsSpan(6 * 4096, 4096).ToArray() } },
        outputs = new[] { new { name = "probabilities" } },
    };

    private static readonly object DiabetesRequest = new
    {
        inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 10 }, data = new[] { 61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90 } } },
    };

    private static async Task<JsonNode> DeployAsync(NodeProcess node, string model, string accelerator, int replicas)
    {
        var deployed = await NodeFixture.SuccessJsonAsync(node.Http.PutAsJsonAsync($"/api/deployments/{model}/1?wait=true", new { replicas, accelerator }));
        Assert.True(deployed["state"]!.GetValue<string>() == "Ready", $"{model} deployed for {accelerator} x{replicas}: {deployed}");
        Assert.Equal(replicas, deployed["replicas"]!.AsArray().Count);
        return deployed;
    }

    private static List<string> ReplicaSilos(JsonNode deployment) =>
        [.. deployment["replicas"]!.AsArray().Select(r => r!["silo"]!.GetValue<string>())];

    private static async Task<JsonArray> SilosAsync(NodeProcess node) => (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync("/api/silos"))).AsArray();

    /// <summary>The address (with generation) of a started silo, found by its silo port.</summary>
    private static string Address(JsonArray silos, Cluster.Member member) =>
        silos.Select(s => s!["address"]!.GetValue<string>()).Single(a => a.StartsWith($"127.0.0.1:{member.SiloPort}@", StringComparison.Ordinal));

    /// <summary>No replica runs on a silo whose accelerator differs from the one its key asks for.</summary>
    private static void AssertPlacementHonoured(JsonArray silos)
    {
        foreach (var silo in silos)
        {
            var accelerator = silo!["accelerator"]!.GetValue<string>();
            foreach (var key in silo["replicas"]!.AsArray().Select(r => r!.GetValue<string>()))
            {
                var wanted = key[(key.LastIndexOf('/') + 1)..];
                Assert.True(wanted is "any" || wanted == accelerator, $"replica {key} runs on {accelerator} silo {silo["address"]}");
            }

        }
    }

    /// <summary>Waits until <paramref name="count"/> silos are Active and each one's tags are known (placement reads them).</summary>
    private static async Task WhenSilosAsync(NodeProcess node, int count)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;
        while (true)
        {
            var silos = await SilosAsync(node);
            if (silos.Count(s => s!["status"]!.GetValue<string>() == "Active" && s["accelerator"] is not null) == count)
            {
                return;
            }
            Assert.True(Stopwatch.GetTimestamp() < deadline, $"{count} silos did not see each other's tags within 30 s: {silos}");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until each deployment is Ready with every replica on one of the silos allowed for it.</summary>
    private static async Task WhenPlacedAsync(NodeProcess node, string phase, params (string Model, string[] Silos)[] expected)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(RecoveryBound.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var seen = new List<string>();
            var placed = true;
            foreach (var (model, allowed) in expected)
            {
                using var response = await node.Http.GetAsync($"/api/deployments/{model}/1");
                var body = await NodeFixture.ReadJsonAsync(response);
                seen.Add($"{model}: {(int)response.StatusCode} {body}");
                placed &= response.IsSuccessStatusCode && body!["state"]!.GetValue<string>() == "Ready"
                    && ReplicaSilos(body).All(allowed.Contains);
            }
            if (placed)
            {
                return;
            }
            Assert.True(Stopwatch.GetTimestamp() < deadline, $"{phase}: deployments not Ready on the expected silos within {RecoveryBound.TotalSeconds} s:\n{string.Join("\n", seen)}");
            await Task.Delay(200);
        }
    }

    /// <summary>The silo processes of one test, each with its own data directory; all stopped and removed at the end.</summary>
    private sealed class Cluster(RedisProcess redis) : IAsyncDisposable
    {
        private readonly List<Member> _members = [];

        public sealed record Member(string Name, NodeProcess Node, string Data, int SiloPort);

        public async Task<Member> StartAsync(string name, string accelerator, string import, params string[] extraArgs)
        {
            var data = Paths.TempDirectory($"cluster-{name}");
            for (var attempt = 1; ; attempt++)
            {
                var siloPort = NodeProcess.FreePort();
                try
                {
                    var node = await NodeProcess.StartAsync(data, import, NodeProcess.FreePort(), siloPort, NodeProcess.FreePort(),
                        ["--cluster", redis.Url, "--accelerator", accelerator, .. extraArgs]);
                    var member = new Member(name, node, data, siloPort);
                    lock (_members)
                    {
                        _members.Add(member);
                    }
                    return member;
                }
                catch (InvalidOperationException e) when (attempt < 3 && e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
                {
                    // A port picked as free was taken meanwhile (another process's outgoing connection): pick again.
                }
                catch
                {
                    Directory.Delete(data, recursive: true);
                    throw;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var member in _members)
            {
                await member.Node.DisposeAsync();
                Directory.Delete(member.Data, recursive: true);
            }
        }
    }
}
