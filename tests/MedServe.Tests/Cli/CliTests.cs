using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MedServe.Cli;
using MedServe.Tests.Support;

namespace MedServe.Tests.Cli;

/// <summary>
/// The <c>medserve</c> CLI against the real embedded node, through its gateway (no HTTP). Every command presents a
/// stored key (<c>--key</c>), made here through the node's key store grain.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class CliTests(NodeFixture node)
{
    private static readonly OnnxBuilder.Io Vector = new("x", TensorDatatype.FP32, [null, 4]);

    private string? _adminKey;

    /// <summary>A new stored key with <paramref name="role"/>.</summary>
    private async Task<string> KeyAsync(string role) =>
        (await node.Grains.GetGrain<IKeyStoreGrain>(0).CreateAsync($"cli-test-{role}", role, null, "cli-tests")).Key;

    /// <summary>Runs medserve against the node as an admin.</summary>
    private async Task<CliRun.Result> Medserve(params string[] args) =>
        await MedserveAs(_adminKey ??= await KeyAsync(Roles.Admin), args);

    private Task<CliRun.Result> MedserveAs(string key, params string[] args) =>
        CliRun.RunAsync(["--gateway", $"127.0.0.1:{node.GatewayPort}", "--key", key, .. args]);

    [Fact]
    public async Task Push_list_show_deploy_infer_scale_status_silos_undeploy_through_the_cli()
    {
        var package = CliRun.WritePackage(Manifests.Identity("cli-echo", "1", [Vector]), OnnxBuilder.Identity(Vector));
        try
        {
            var push = await Medserve("models", "push", package);
            Assert.True(push.Code == ExitCodes.Ok, push.ToString());
            Assert.Contains("registered cli-echo:1", push.Out, StringComparison.Ordinal);

            var list = await Medserve("models", "list");
            Assert.Equal(ExitCodes.Ok, list.Code);
            Assert.Matches(@"(?m)^NAME\s+VERSIONS\s+DEFAULT\s+DEPLOYED$", list.Out);
            Assert.Matches(@"(?m)^cli-echo\s+1\s+-\s+-$", list.Out);
            Assert.Matches(@"(?m)^diabetes-linear\s+1\s+1\s+1$", list.Out);

            var show = (await Medserve("models", "show", "cli-echo", "--version", "1", "--json")).Json();
            Assert.Equal(64, show["version"]!["sha256"]!.GetValue<string>().Length);
            Assert.Equal("Unloaded", show["deployment"]!["state"]!.GetValue<string>());
            Assert.Contains("[-1,4]", (await Medserve("models", "show", "cli-echo", "--version", "1")).Out, StringComparison.Ordinal);

            var deploy = await Medserve("deploy", "cli-echo", "1", "--wait");
            Assert.True(deploy.Code == ExitCodes.Ok, deploy.ToString());
            Assert.StartsWith("cli-echo:1 Ready (1/1 replicas", deploy.Out, StringComparison.Ordinal);

            // The identity model echoes its input: the numbers come back as sent.
            var echo = await Medserve("infer", "cli-echo", "--input", "x=2,4:FP32:1,2.5,-3,4,5,6,7,8.25");
            Assert.True(echo.Code == ExitCodes.Ok, echo.ToString());
            var output = JsonNode.Parse(echo.Out)!["outputs"]![0]!;
            Assert.Equal("x_out", output["name"]!.GetValue<string>());
            Assert.Equal([2L, 4L], output["shape"]!.AsArray().Select(d => d!.GetValue<long>()));
            Assert.Equal([1, 2.5, -3, 4, 5, 6, 7, 8.25], output["data"]!.AsArray().Select(d => d!.GetValue<double>()));

            var scale = await Medserve("scale", "cli-echo", "1", "2", "--wait");
            Assert.True(scale.Code == ExitCodes.Ok, scale.ToString());
            var status = (await Medserve("status", "cli-echo", "1", "--json")).Json();
            Assert.Equal("Ready", status["state"]!.GetValue<string>());
            Assert.Equal(2, status["spec"]!["replicas"]!.GetValue<int>());
            Assert.Equal(2, status["replicas"]!.AsArray().Count);
            Assert.Matches(@"(?m)^cli-echo\s+1\s+Ready\s+2/2\s", (await Medserve("status")).Out);

            var silo = Assert.Single((await Medserve("silos", "--json")).Json().AsArray())!;
            Assert.Equal("Active", silo["status"]!.GetValue<string>());
            Assert.Contains(silo["replicas"]!.AsArray(), r => r!.GetValue<string>().StartsWith("cli-echo/1/1/", StringComparison.Ordinal));
            Assert.Matches(@"(?m)^ADDRESS\s+NAME\s+STATUS\s+ACCELERATOR\s+PROVIDER\s+LABELS\s+REPLICAS$", (await Medserve("silos")).Out);

            var undeploy = await Medserve("undeploy", "cli-echo", "1");
            Assert.True(undeploy.Code == ExitCodes.Ok, undeploy.ToString());
            Assert.Equal("Unloaded", (await Medserve("status", "cli-echo", "1", "--json")).Json()["state"]!.GetValue<string>());
            var notServing = await Medserve("infer", "cli-echo", "--version", "1", "--input", "x=1,4:FP32:1,2,3,4");
            Assert.True(notServing.Code == ExitCodes.NotFound, notServing.ToString());
            Assert.Contains("cli-echo:1 is not deployed", notServing.Err, StringComparison.Ordinal);

            // Pushing the same version again is a conflict.
            Assert.Equal(ExitCodes.Conflict, (await Medserve("models", "push", package)).Code);
        }
        finally
        {
            Directory.Delete(package, recursive: true);
        }
    }

    [Fact]
    public async Task A_zip_pushed_with_deploy_serves_at_once()
    {
        var zip = Path.Combine(Paths.TempDirectory("cli-zip"), "package.zip");
        await File.WriteAllBytesAsync(zip, CliRun.Zip(Manifests.Identity("cli-zip", "3", [Vector]), OnnxBuilder.Identity(Vector)));
        var push = await Medserve("--json", "models", "push", zip, "--deploy");
        var body = push.Json();
        Assert.Equal("3", body["version"]!["manifest"]!["version"]!.GetValue<string>());
        Assert.Equal("Ready", body["deployment"]!["state"]!.GetValue<string>());
        Assert.Equal(ExitCodes.Ok, (await Medserve("undeploy", "cli-zip", "3")).Code);
        Directory.Delete(Path.GetDirectoryName(zip)!, recursive: true);
    }

    [Fact]
    public async Task Infer_from_a_v2_request_file_gives_the_models_numbers()
    {
        var dir = Paths.TempDirectory("cli-infer");
        try
        {
            var request = Path.Combine(dir, "request.json");
            await File.WriteAllTextAsync(request, """
                {"id": "p1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10],
                  "data": [61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90]}]}
                """);
            var result = await Medserve("infer", "diabetes-linear", "--data", request);
            Assert.True(result.Code == ExitCodes.Ok, result.ToString());
            var body = JsonNode.Parse(result.Out)!;
            Assert.Equal("p1", body["id"]!.GetValue<string>());
            Assert.Equal("1", body["model_version"]!.GetValue<string>());
            Assert.InRange(Math.Abs(body["outputs"]![0]!["data"]![0]!.GetValue<double>() - 138.2645), 0, 1e-3);

            // The same values from a file through --input name=shape:datatype:@file.
            var values = Path.Combine(dir, "values.json");
            await File.WriteAllTextAsync(values, "[[61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90]]");
            var fromFile = await Medserve("infer", "diabetes-linear", "--version", "1", "--input", $"input=1x10:fp32:@{values}");
            Assert.True(fromFile.Code == ExitCodes.Ok, fromFile.ToString());
            Assert.InRange(Math.Abs(JsonNode.Parse(fromFile.Out)!["outputs"]![0]!["data"]![0]!.GetValue<double>() - 138.2645), 0, 1e-3);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Unknown_models_and_versions_exit_3()
    {
        var show = await Medserve("models", "show", "no-such-model");
        Assert.Equal(ExitCodes.NotFound, show.Code);
        Assert.Contains("unknown model 'no-such-model'", show.Err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.NotFound, (await Medserve("deploy", "no-such-model", "1")).Code);
        Assert.Equal(ExitCodes.NotFound, (await Medserve("deploy", "diabetes-linear", "99")).Code);
        Assert.Equal(ExitCodes.NotFound, (await Medserve("infer", "no-such-model", "--input", "x=1:FP32:1")).Code);
        Assert.Equal(ExitCodes.NotFound, (await Medserve("scale", "breast-cancer-mlp", "7", "2")).Code);

        var json = await Medserve("--json", "status", "no-such-model", "1");
        Assert.Equal(ExitCodes.NotFound, json.Code);
        Assert.Equal("NotFound", JsonNode.Parse(json.Err)!["kind"]!.GetValue<string>());
    }

    [Fact]
    public async Task Bad_packages_and_bad_input_exit_2_naming_the_field()
    {
        var manifest = Manifests.Identity("cli-bad", "1", [Vector]);
        ((Dictionary<string, object?>[])manifest["inputs"]!)[0]["datatype"] = "FP64";
        var package = CliRun.WritePackage(manifest, OnnxBuilder.Identity(Vector));
        try
        {
            var push = await Medserve("models", "push", package);
            Assert.Equal(ExitCodes.Usage, push.Code);
            Assert.Contains("datatype is FP64 but the graph's 'x' is FP32 (field: manifest.inputs[0].datatype)", push.Err, StringComparison.Ordinal);
            File.Delete(Path.Combine(package, "model.onnx"));
            Assert.Contains("(field: model)", (await Medserve("models", "push", package)).Err, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(package, recursive: true);
        }
        Assert.Equal(ExitCodes.Usage, (await Medserve("models", "push", "/no/such/dir")).Code);

        var wrongShape = await Medserve("infer", "diabetes-linear", "--input", "input=1,9:FP32:1,2,3,4,5,6,7,8,9");
        Assert.Equal(ExitCodes.Usage, wrongShape.Code);
        Assert.Contains("shape", wrongShape.Err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Usage, (await Medserve("infer", "diabetes-linear", "--input", "input:1,10")).Code);
        Assert.Equal(ExitCodes.Usage, (await Medserve("infer", "diabetes-linear")).Code);
    }

    [Fact]
    public async Task Usage_errors_exit_2_without_connecting()
    {
        var missing = await CliRun.RunAsync("--gateway", "127.0.0.1:1", "deploy", "diabetes-linear");
        Assert.Equal(ExitCodes.Usage, missing.Code);
        Assert.Contains("Required argument 'version' missing", missing.Err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Usage, (await CliRun.RunAsync("deploy", "a", "1", "--accelerator", "tpu")).Code);
        Assert.Equal(ExitCodes.Usage, (await CliRun.RunAsync("no-such-command")).Code);
        Assert.Equal(ExitCodes.Usage, (await CliRun.RunAsync("--gateway", "localhost", "status")).Code);
        var help = await CliRun.RunAsync("--help");
        Assert.Equal(ExitCodes.Ok, help.Code);
        Assert.Contains("scale <name> <version> <replicas>", help.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_reachable_cluster_exits_5_quickly()
    {
        var clock = Stopwatch.StartNew();
        // The key is not checked before connecting (only that one is given): no cluster is exit 5 whatever the key.
        var gateway = await CliRun.RunAsync("--gateway", $"127.0.0.1:{NodeProcess.FreePort()}", "--key", "msk_000000000000_x", "status");
        Assert.Equal(ExitCodes.Unavailable, gateway.Code);
        Assert.Contains("could not connect to MedServe", gateway.Err, StringComparison.Ordinal);

        var redis = await CliRun.RunAsync("--json", "--connect-timeout", "2", "--key", "msk_000000000000_x", "--cluster", $"redis://127.0.0.1:{NodeProcess.FreePort()}", "silos");
        Assert.Equal(ExitCodes.Unavailable, redis.Code);
        Assert.Equal(5, JsonNode.Parse(redis.Err)!["exit_code"]!.GetValue<int>());
        // A bound against hanging, not a speed target: the connect timeout is 2 s.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
    }

    [Fact]
    public async Task A_csv_job_runs_through_the_cli_with_progress_and_downloads_as_csv()
    {
        var rows = TestData.BreastCancer();
        var source = File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Where(l => l.Length > 0).ToArray();
        var csv = Path.Combine(Paths.TempDirectory("cli-job"), "records.csv");
        // Only the 30 features and an id column: no --columns needed.
        await File.WriteAllLinesAsync(csv, source.Select((line, i) => (i == 0 ? "id" : $"patient-{i - 1}") + "," + string.Join(',', line.Split(',').Take(30))));
        var id = "cli-" + Guid.NewGuid().ToString("N")[..8];

        var submitted = await Medserve("jobs", "submit", "breast-cancer-logreg", csv, "--id", id, "--outputs", "probabilities", "--wait");
        Assert.True(submitted.Code == 0, submitted.ToString());
        Assert.Contains($"job {id} Completed: {rows.Count}/{rows.Count} answered (0 failed)", submitted.Out, StringComparison.Ordinal);

        var status = (await Medserve("--json", "jobs", "status", id)).Json();
        Assert.Equal(rows.Count, status["succeeded"]!.GetValue<int>());

        var listed = await Medserve("jobs", "list");
        Assert.Contains(id, listed.Out, StringComparison.Ordinal);

        var resultsFile = csv + ".out";
        var results = await Medserve("jobs", "results", id, "--output", resultsFile);
        Assert.True(results.Code == 0, results.ToString());
        var lines = await File.ReadAllLinesAsync(resultsFile);
        Assert.Equal("id,error,probabilities_0,probabilities_1", lines[0]);
        Assert.Equal(rows.Count + 1, lines.Length);
        var first = lines[1].Split(',');
        Assert.Equal("patient-0", first[0]);
        Assert.Equal(rows[0].PBenignLogreg, double.Parse(first[3], System.Globalization.CultureInfo.InvariantCulture), 4);

        Assert.Equal(ExitCodes.NotFound, (await Medserve("jobs", "status", "no-such-job")).Code);
        // A CSV without the 'worst area' feature: a usage error naming it and how to choose columns.
        var partial = Path.Combine(Path.GetDirectoryName(csv)!, "partial.csv");
        await File.WriteAllLinesAsync(partial, source.Select(line => string.Join(',', line.Split(',').Where((_, i) => i != 23))));
        var missing = await Medserve("jobs", "submit", "breast-cancer-logreg", partial);
        Assert.Equal(ExitCodes.Usage, missing.Code);
        Assert.Contains("'worst area'", missing.Err, StringComparison.Ordinal);
        Assert.Contains("--columns", missing.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_key_every_command_is_a_usage_error_naming_key()
    {
        foreach (var command in new[] { new[] { "status" }, ["models", "list"], ["silos"], ["jobs", "list"], ["infer", "diabetes-linear", "--input", "input=1,10:FP32:1,2,3,4,5,6,7,8,9,10"] })
        {
            var run = await CliRun.RunAsync(["--gateway", $"127.0.0.1:{node.GatewayPort}", .. command]);
            Assert.True(run.Code == ExitCodes.Usage, run.ToString());
            Assert.Contains("--key", run.Err, StringComparison.Ordinal);
            Assert.Contains("MEDSERVE_KEY", run.Err, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Each_command_asks_the_permission_the_http_api_asks()
    {
        var viewer = await KeyAsync(Roles.Viewer);
        var package = CliRun.WritePackage(Manifests.Identity("cli-viewer", "1", [Vector]), OnnxBuilder.Identity(Vector));
        try
        {
            // A viewer may look, not push, deploy, scale, infer or run jobs.
            var push = await MedserveAs(viewer, "models", "push", package);
            Assert.True(push.Code == ExitCodes.Forbidden, push.ToString());
            Assert.Contains("a viewer key may not do this (it needs the manage-models permission)", push.Err, StringComparison.Ordinal);
            Assert.Equal(ExitCodes.NotFound, (await Medserve("models", "show", "cli-viewer")).Code);
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(viewer, "models", "list")).Code);
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(viewer, "status")).Code);
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(viewer, "silos")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "deploy", "diabetes-linear", "1")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "undeploy", "diabetes-linear", "1")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "scale", "diabetes-linear", "1", "1")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "infer", "diabetes-linear", "--input", "input=1,10:FP32:1,2,3,4,5,6,7,8,9,10")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "jobs", "list")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer, "keys", "list")).Code);

            // An operator scales what runs, but does not deploy what does not.
            var operatorKey = await KeyAsync(Roles.Operator);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(operatorKey, "deploy", "diabetes-linear", "1")).Code);
            Assert.Equal(ExitCodes.Ok, (await Medserve("models", "push", package)).Code);
            var notRunning = await MedserveAs(operatorKey, "scale", "cli-viewer", "1", "1");
            Assert.True(notRunning.Code == ExitCodes.Forbidden, notRunning.ToString());
            Assert.Contains("an operator may change the replicas of a running deployment", notRunning.Err, StringComparison.Ordinal);
            var replicas = (await MedserveAs(operatorKey, "--json", "status", "diabetes-linear", "1")).Json()["spec"]!["replicas"]!.GetValue<int>();
            var scaled = await MedserveAs(operatorKey, "scale", "diabetes-linear", "1", replicas.ToString(CultureInfo.InvariantCulture), "--wait");
            Assert.True(scaled.Code == ExitCodes.Ok, scaled.ToString());

            // Unknown, wrong-secret and revoked keys: exit 6.
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs("msk_000000000000_nope", "status")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs("not-a-key", "status")).Code);
            Assert.Equal(ExitCodes.Forbidden, (await MedserveAs(viewer[..^2] + "xx", "status")).Code);
            await node.Grains.GetGrain<IKeyStoreGrain>(0).RevokeAsync(ApiKeys.IdOf(viewer)!);
            var revoked = await MedserveAs(viewer, "status");
            Assert.True(revoked.Code == ExitCodes.Forbidden, revoked.ToString());
            Assert.Contains("revoked", revoked.Err, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(package, recursive: true);
        }
    }

    [Fact]
    public async Task A_clinician_sees_only_their_own_jobs()
    {
        var (alice, bob) = (await KeyAsync(Roles.Clinician), await KeyAsync(Roles.Clinician));
        var source = File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Where(l => l.Length > 0).Take(4).ToArray();
        var csv = Path.Combine(Paths.TempDirectory("cli-own-job"), "records.csv");
        await File.WriteAllLinesAsync(csv, source.Select(line => string.Join(',', line.Split(',').Take(30))));
        var (mine, theirs) = ("cli-alice-" + Guid.NewGuid().ToString("N")[..8], "cli-bob-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(alice, "jobs", "submit", "breast-cancer-logreg", csv, "--id", mine, "--wait")).Code);
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(bob, "jobs", "submit", "breast-cancer-logreg", csv, "--id", theirs, "--wait")).Code);

            var listed = (await MedserveAs(alice, "--json", "jobs", "list")).Json().AsArray().Select(j => j!["id"]!.GetValue<string>()).ToArray();
            Assert.Contains(mine, listed);
            Assert.DoesNotContain(theirs, listed);
            Assert.Equal(ExitCodes.Ok, (await MedserveAs(alice, "jobs", "status", mine)).Code);
            // Bob's job does not exist for Alice: not its status, results, cancel, nor its id to reuse.
            Assert.Equal(ExitCodes.NotFound, (await MedserveAs(alice, "jobs", "status", theirs)).Code);
            Assert.Equal(ExitCodes.NotFound, (await MedserveAs(alice, "jobs", "results", theirs)).Code);
            Assert.Equal(ExitCodes.NotFound, (await MedserveAs(alice, "jobs", "cancel", theirs)).Code);
            Assert.Equal(ExitCodes.Conflict, (await MedserveAs(alice, "jobs", "submit", "breast-cancer-logreg", csv, "--id", theirs)).Code);
            // An admin sees both.
            var all = (await Medserve("--json", "jobs", "list")).Json().AsArray().Select(j => j!["id"]!.GetValue<string>()).ToArray();
            Assert.Contains(mine, all);
            Assert.Contains(theirs, all);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(csv)!, recursive: true);
        }
    }
}
