using MedServe.Protocol;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MedServe.Client;

namespace MedServe.Cli;

/// <summary>
/// The <c>medserve</c> command line: the command tree, connecting, output (tables, or JSON with <c>--json</c>) and
/// exit codes (<see cref="ExitCodes"/>). <see cref="RunAsync"/> is the whole program, so tests run it in-process.
/// </summary>
public sealed partial class MedServeCli
{
    private readonly TextWriter _out;
    private readonly TextWriter _err;

    /// <summary>Whether this run prints JSON (<c>--json</c>); set once the command line is parsed.</summary>
    private bool _jsonOutput;

    private readonly Option<string[]> _gateway = new("--gateway", "-g")
    {
        Description = "Gateway host:port of a node (repeatable). Default: 127.0.0.1:30000, the embedded node.",
        Recursive = true,
        HelpName = "host:port",
    };

    private readonly Option<string> _cluster = new("--cluster")
    {
        Description = "A Redis-membership cluster, redis://host:port, as its silos were started with.",
        Recursive = true,
        HelpName = "redis://host:port",
    };

    private readonly Option<string> _clusterId = new("--cluster-id")
    {
        Description = "Orleans cluster id (default: medserve with --cluster, medserve-embedded with gateways).",
        Recursive = true,
    };

    private readonly Option<bool> _jsonOption = new("--json")
    {
        Description = "Machine output: JSON on stdout (snake_case, as the HTTP API), errors as JSON on stderr.",
        Recursive = true,
    };

    private readonly Option<int> _connectTimeout = new("--connect-timeout")
    {
        Description = "Seconds to try reaching the cluster before giving up (exit 5).",
        Recursive = true,
        DefaultValueFactory = _ => 10,
        HelpName = "seconds",
    };

    /// <summary>Errors on stderr: one line each, as the HTTP API's JSON conventions.</summary>
    private static readonly JsonSerializerOptions ErrorJson = new(ManifestJson.Options)
    {
        WriteIndented = false,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private MedServeCli(TextWriter output, TextWriter error)
    {
        _out = output;
        _err = error;
    }

    /// <summary>Runs <c>medserve</c> with <paramref name="args"/>; returns the exit code.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default) =>
        new MedServeCli(output, error).RunAsync(args, cancellationToken);

    private async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var parse = BuildCommands().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors)
            {
                await _err.WriteLineAsync($"medserve: {e.Message}");
            }
            await _err.WriteLineAsync("Run 'medserve --help' for usage.");
            return ExitCodes.Usage;
        }
        return await parse.InvokeAsync(new InvocationConfiguration { Output = _out, Error = _err, EnableDefaultExceptionHandler = false }, cancellationToken);
    }

    private RootCommand BuildCommands()
    {
        var root = new RootCommand("medserve: push, deploy, scale and call models on a MedServe cluster (over the Orleans grain client).")
        {
            _gateway, _cluster, _clusterId, _jsonOption, _connectTimeout, _key,
        };

        var models = new Command("models", "Model packages: push, list, show.");
        var pushPath = new Argument<string>("path") { Description = "A package directory (manifest.json + model.onnx) or a zip of one." };
        var pushDeploy = new Option<bool>("--deploy") { Description = "Deploy it with the defaults and wait until it settles." };
        var push = new Command("push", "Register a model package.") { pushPath, pushDeploy };
        push.SetAction(Handler([Permissions.ManageModels], (p, c, _) => PushAsync(c, p.GetRequiredValue(pushPath), p.GetValue(pushDeploy))));
        var list = new Command("list", "Registered models, their versions and default version.");
        list.SetAction(Handler([Permissions.View], (_, c, _) => ListModelsAsync(c)));
        var showName = new Argument<string>("name");
        var showVersion = new Option<string>("--version", "-v") { Description = "Show this version's model card." };
        var show = new Command("show", "A model's versions, or with --version its model card and deployment.") { showName, showVersion };
        show.SetAction(Handler([Permissions.View], (p, c, _) => ShowModelAsync(c, p.GetRequiredValue(showName), p.GetValue(showVersion))));
        models.Add(push);
        models.Add(list);
        models.Add(show);
        root.Add(models);

        var name = new Argument<string>("name");
        var version = new Argument<string>("version");
        var wait = new Option<bool>("--wait", "-w") { Description = "Wait until the deployment settles; exit 5 unless it is Ready." };
        var replicas = new Option<int>("--replicas", "-r") { Description = "Replicas (sessions) to run.", DefaultValueFactory = _ => 1 };
        var accelerator = new Option<string>("--accelerator") { Description = "Where replicas may run (default: the manifest's)." };
        accelerator.AcceptOnlyFromAmong(Capabilities.Cpu, Capabilities.Gpu, Capabilities.Any);
        var deploy = new Command("deploy", "Deploy (or re-spec) a registered version.") { name, version, replicas, accelerator, wait };
        deploy.SetAction(Handler([Permissions.ManageModels], (p, c, _) => DeployAsync(c, p.GetRequiredValue(name), p.GetRequiredValue(version),
            new DeploymentSpec { Replicas = p.GetValue(replicas), Accelerator = p.GetValue(accelerator) }, p.GetValue(wait))));
        root.Add(deploy);

        var undeploy = new Command("undeploy", "Stop serving a version and free its sessions.") { name, version };
        undeploy.SetAction(Handler([Permissions.ManageModels], (p, c, _) => UndeployAsync(c, p.GetRequiredValue(name), p.GetRequiredValue(version))));
        root.Add(undeploy);

        var count = new Argument<int>("replicas") { Description = "The new replica count." };
        var scale = new Command("scale", "Change a deployment's replica count, keeping the rest of its spec.") { name, version, count, wait };
        // As the HTTP API's deploy-or-scale rule: a model manager, or an operator changing a running deployment's replicas.
        scale.SetAction(Handler([Permissions.ManageModels, Permissions.Operate], (p, c, me) => ScaleAsync(c, me, p.GetRequiredValue(name), p.GetRequiredValue(version), p.GetValue(count), p.GetValue(wait))));
        root.Add(scale);

        var inferVersion = new Option<string>("--version", "-v") { Description = "Version to call (default: the model's default version)." };
        var input = new Option<string[]>("--input", "-i")
        {
            Description = "An input tensor, name=shape:datatype:values, values comma-separated or @file.json (a JSON array). Repeatable.",
            HelpName = "name=shape:datatype:values",
        };
        var data = new Option<string>("--data", "-d") { Description = "A file holding a V2 JSON request body (inputs, outputs, id).", HelpName = "request.json" };
        var infer = new Command("infer", "Run one V2 inference request; prints the V2 JSON response.") { name, inferVersion, input, data };
        infer.SetAction(Handler([Permissions.Infer], (p, c, _) => InferAsync(c, p.GetRequiredValue(name), p.GetValue(inferVersion), p.GetValue(data), p.GetValue(input) ?? [])));
        root.Add(infer);

        var silos = new Command("silos", "Silos: status, accelerator, execution provider, labels, hosted replicas.");
        silos.SetAction(Handler([Permissions.View], (_, c, _) => SilosAsync(c)));
        root.Add(silos);

        var statusName = new Argument<string?>("name") { Arity = ArgumentArity.ZeroOrOne, Description = "Only this model." };
        var statusVersion = new Argument<string?>("version") { Arity = ArgumentArity.ZeroOrOne, Description = "Only this version (with its validation report)." };
        var status = new Command("status", "Deployments: state, replicas, silos, reason.") { statusName, statusVersion };
        status.SetAction(Handler([Permissions.View], (p, c, _) => StatusAsync(c, p.GetValue(statusName), p.GetValue(statusVersion))));
        root.Add(status);
        root.Add(JobCommands());
        root.Add(KeyCommands());
        root.Add(AuditCommands());
        return root;
    }

    private Command JobCommands()
    {
        string[] mayInfer = [Permissions.Infer];
        var jobs = new Command("jobs", "Async jobs: submit a CSV of records, watch progress, cancel, download results.");
        var model = new Argument<string>("model") { Description = "Model to run every record through." };
        var csv = new Argument<string>("csv") { Description = "CSV file: a header row, one record per row, an optional id column." };
        var version = new Option<string>("--version", "-v") { Description = "Version (default: the model's default version)." };
        var columns = new Option<string>("--columns") { Description = "Comma-separated feature columns, in the model's order, when the header's names differ from the model's features (default: columns matched to the features by name; a model without feature names takes every column but the id).", HelpName = "a,b,c" };
        var outputs = new Option<string>("--outputs") { Description = "Comma-separated outputs to keep (default: all).", HelpName = "name,..." };
        var jobId = new Option<string>("--id") { Description = "Job id (default: a new one)." };
        var watch = new Option<bool>("--wait") { Description = "Show progress until the job ends; exit 5 if it was cancelled." };
        var submit = new Command("submit", "Submit a CSV job.") { model, csv, version, columns, outputs, jobId, watch };
        submit.SetAction(Handler(mayInfer, async (p, c, me) =>
        {
            var bytes = await File.ReadAllBytesAsync(p.GetRequiredValue(csv));
            // As the HTTP API: someone else's job id is taken, not theirs to resubmit or see.
            if (p.GetValue(jobId) is { } given && await c.Grains.GetGrain<IJobGrain>(given).GetAsync() is { } existing && !MayRead(me, existing))
            {
                throw MedServeException.Conflict($"job id '{given}' is taken; choose another");
            }
            var info = await c.SubmitCsvJobAsync(p.GetRequiredValue(model), bytes, p.GetValue(version),
                Split(p.GetValue(columns)), Split(p.GetValue(outputs)), p.GetValue(jobId), owner: me.Id);
            return p.GetValue(watch) ? await WatchJobAsync(c, me, info.Id) : WriteJob(info);
        }));
        jobs.Add(submit);

        var id = new Argument<string>("id") { Description = "Job id." };
        var list = new Command("list", "Your jobs (an admin's: every job) with their state and progress.");
        list.SetAction(Handler(mayInfer, async (_, c, me) =>
        {
            var all = (await c.ListJobsAsync()).Where(j => MayRead(me, j)).ToArray();
            if (_jsonOutput)
            {
                WriteJson(all);
                return ExitCodes.Ok;
            }
            var table = new Table("ID", "MODEL", "STATE", "ANSWERED", "FAILED", "ITEMS/S", "ETA S", "SILO");
            foreach (var j in all.OrderBy(j => j.CreatedAt))
            {
                table.Add(j.Id, $"{j.Model}:{j.Version}", j.State.ToString(), $"{j.Answered}/{j.Total}", j.Failed.ToString(CultureInfo.InvariantCulture),
                    j.ItemsPerSecond.ToString("0.#", CultureInfo.InvariantCulture), j.EtaSeconds?.ToString("0.#", CultureInfo.InvariantCulture), j.Silo);
            }
            table.WriteTo(_out);
            return ExitCodes.Ok;
        }));
        jobs.Add(list);

        var show = new Command("status", "One job's progress.") { id, watch };
        show.SetAction(Handler(mayInfer, async (p, c, me) => p.GetValue(watch) ? await WatchJobAsync(c, me, p.GetRequiredValue(id)) : WriteJob(await OwnJobAsync(c, me, p.GetRequiredValue(id)))));
        jobs.Add(show);

        var cancel = new Command("cancel", "Stop a job; answers so far are kept.") { id };
        cancel.SetAction(Handler(mayInfer, async (p, c, me) =>
        {
            await OwnJobAsync(c, me, p.GetRequiredValue(id));
            return WriteJob(await c.CancelJobAsync(p.GetRequiredValue(id)));
        }));
        jobs.Add(cancel);

        var output = new Option<string>("--output", "-o") { Description = "Write the results to this file instead of stdout.", HelpName = "file" };
        var format = new Option<string>("--format") { Description = "csv (default) or json.", DefaultValueFactory = _ => "csv" };
        format.AcceptOnlyFromAmong("csv", "json");
        var results = new Command("results", "Download a job's results.") { id, format, output };
        results.SetAction(Handler(mayInfer, async (p, c, me) =>
        {
            await OwnJobAsync(c, me, p.GetRequiredValue(id));
            var answers = await c.GetJobResultsAsync(p.GetRequiredValue(id));
            var text = p.GetValue(format) == "json" ? JsonSerializer.Serialize(answers, ManifestJson.Options) : CsvRecords.WriteResults(answers);
            if (p.GetValue(output) is { } file)
            {
                await File.WriteAllTextAsync(file, text);
                await _err.WriteLineAsync($"{answers.Length} results written to {file}");
            }
            else
            {
                await _out.WriteAsync(text);
            }
            return ExitCodes.Ok;
        }));
        jobs.Add(results);
        return jobs;
    }

    /// <summary>A job the caller may see (their own, or any for an admin); anyone else's is 'not found', as over HTTP.</summary>
    private static async Task<JobInfo> OwnJobAsync(MedServeClient client, ApiKeyInfo me, string id)
    {
        var job = await client.GetJobAsync(id);
        return MayRead(me, job) ? job : throw MedServeException.NotFound("no such job");
    }

    private static string[]? Split(string? list) => string.IsNullOrWhiteSpace(list) ? null : list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    private int WriteJob(JobInfo j)
    {
        if (_jsonOutput)
        {
            WriteJson(j);
        }
        else
        {
            var eta = j.EtaSeconds is { } s ? $", ETA {s:0.#} s" : "";
            _out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"job {j.Id} {j.State}: {j.Answered}/{j.Total} answered ({j.Failed} failed), {j.ItemsPerSecond:0.#} items/s{eta} on {j.Model}:{j.Version}"));
        }
        return ExitCodes.Ok;
    }

    /// <summary>Progress lines on stderr until the job ends; the final state on stdout.</summary>
    private async Task<int> WatchJobAsync(MedServeClient client, ApiKeyInfo me, string id)
    {
        while (true)
        {
            var job = await OwnJobAsync(client, me, id);
            if (job.State != JobState.Running)
            {
                WriteJob(job);
                return job.State == JobState.Completed ? ExitCodes.Ok : ExitCodes.Unavailable;
            }
            await _err.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{job.Answered}/{job.Total} answered, {job.ItemsPerSecond:0.#} items/s{(job.EtaSeconds is { } s ? $", ETA {s:0.#} s" : "")}"));
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>
    /// Connects, checks the caller's key for one of <paramref name="permissions"/> (<see cref="RequireKeyAsync"/>),
    /// runs a command with the key's record, and turns failures into a message on stderr and an exit code.
    /// </summary>
    private Func<ParseResult, CancellationToken, Task<int>> Handler(string[] permissions, Func<ParseResult, MedServeClient, ApiKeyInfo, Task<int>> command) => async (parse, cancellationToken) =>
    {
        var json = _jsonOutput = parse.GetValue(_jsonOption);
        try
        {
            var key = PresentedKey(parse);
            await using var client = await MedServeClient.ConnectAsync(ClientOptions(parse), cancellationToken);
            var me = await RequireKeyAsync(key, client, permissions);
            return await command(parse, client, me);
        }
        catch (MedServeException e)
        {
            return await FailAsync(json, ExitCodes.Of(e.Kind), e.Kind.ToString(), e.Message, e.Field);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            return await FailAsync(json, ExitCodes.Unavailable, nameof(ErrorKind.NotReady), $"the cluster did not answer ({e.GetType().Name}: {e.Message})", null);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return await FailAsync(json, ExitCodes.Unexpected, nameof(ErrorKind.Internal), $"unexpected {e.GetType().Name}: {e.Message}", null);
        }
    };

    private MedServeClientOptions ClientOptions(ParseResult parse)
    {
        var gateways = parse.GetValue(_gateway) ?? [];
        var cluster = parse.GetValue(_cluster);
        if (gateways.Length > 0 && !string.IsNullOrWhiteSpace(cluster))
        {
            throw MedServeException.Invalid("give --gateway or --cluster, not both", "--cluster");
        }
        var timeout = parse.GetValue(_connectTimeout);
        if (timeout < 1)
        {
            throw MedServeException.Invalid("--connect-timeout must be at least 1 second", "--connect-timeout");
        }
        var options = new MedServeClientOptions
        {
            Cluster = cluster,
            ClusterId = parse.GetValue(_clusterId),
            ConnectTimeout = TimeSpan.FromSeconds(timeout),
        };
        return gateways.Length > 0 ? options with { Gateways = gateways } : options;
    }

    private async Task<int> FailAsync(bool json, int exitCode, string kind, string message, string? field)
    {
        if (json)
        {
            await _err.WriteLineAsync(JsonSerializer.Serialize(new { error = message, kind, field, exit_code = exitCode }, ErrorJson));
        }
        else
        {
            await _err.WriteLineAsync($"medserve: {message}{(field is null ? "" : $" (field: {field})")}");
        }
        return exitCode;
    }

    private async Task<int> PushAsync(MedServeClient client, string path, bool deploy)
    {
        var json = _jsonOutput;
        var info = await client.PushAsync(Path.GetFullPath(path));
        var name = info.Manifest.Name;
        var version = info.Manifest.Version;
        DeploymentInfo? deployment = deploy ? await client.DeployAsync(name, version) : null;
        if (json)
        {
            WriteJson(new { version = info, deployment });
        }
        else
        {
            _out.WriteLine($"registered {name}:{version} (sha256 {info.Sha256[..12]}, {info.SizeBytes} bytes)");
            if (deployment is not null)
            {
                WriteDeployment(deployment);
            }
        }
        return deployment is null ? ExitCodes.Ok : await SettledAsync(deployment, json);
    }

    private async Task<int> ListModelsAsync(MedServeClient client)
    {
        var models = await client.ListModelsAsync();
        if (_jsonOutput)
        {
            WriteJson(models);
            return ExitCodes.Ok;
        }
        var table = new Table("NAME", "VERSIONS", "DEFAULT", "DEPLOYED");
        foreach (var m in models)
        {
            table.Add(m.Name, string.Join(",", m.Versions.Select(v => v.Manifest.Version)), m.DefaultVersion,
                string.Join(",", m.Versions.Where(v => v.Deployed).Select(v => v.Manifest.Version)));
        }
        table.WriteTo(_out);
        return ExitCodes.Ok;
    }

    private async Task<int> ShowModelAsync(MedServeClient client, string name, string? version)
    {
        if (version is null)
        {
            var model = await client.GetModelAsync(name);
            if (_jsonOutput)
            {
                WriteJson(model);
                return ExitCodes.Ok;
            }
            _out.WriteLine($"{model.Name} (default version: {model.DefaultVersion ?? "none deployed"})");
            var table = new Table("VERSION", "DEPLOYED", "ACCELERATOR", "SIZE", "SHA256", "REGISTERED", "DESCRIPTION");
            foreach (var v in model.Versions)
            {
                table.Add(v.Manifest.Version, v.Deployed ? "yes" : "no", v.Manifest.Accelerator, v.SizeBytes.ToString(CultureInfo.InvariantCulture),
                    v.Sha256[..Math.Min(12, v.Sha256.Length)], v.RegisteredAt.ToString("u", CultureInfo.InvariantCulture), v.Manifest.Description);
            }
            table.WriteTo(_out);
            return ExitCodes.Ok;
        }
        var info = await client.GetVersionAsync(name, version);
        var deployment = await client.GetDeploymentAsync(name, version);
        if (_jsonOutput)
        {
            WriteJson(new { version = info, deployment });
            return ExitCodes.Ok;
        }
        var manifest = info.Manifest;
        var card = new Table("FIELD", "VALUE")
            .Add("model", $"{manifest.Name}:{manifest.Version}")
            .Add("description", manifest.Description)
            .Add("intended use", manifest.IntendedUse)
            .Add("accelerator", manifest.Accelerator)
            .Add("sha256", info.Sha256)
            .Add("size", $"{info.SizeBytes} bytes")
            .Add("registered", info.RegisteredAt.ToString("u", CultureInfo.InvariantCulture))
            .Add("deployment", $"{deployment.State}{(deployment.Reason is null ? "" : $": {deployment.Reason}")}");
        foreach (var (metric, value) in manifest.ValidationMetrics)
        {
            card.Add($"metric {metric}", value.ToString("G6", CultureInfo.InvariantCulture));
        }
        foreach (var limitation in manifest.Limitations)
        {
            card.Add("limitation", limitation);
        }
        card.WriteTo(_out);
        _out.WriteLine();
        var io = new Table("TENSOR", "NAME", "DATATYPE", "SHAPE");
        foreach (var t in manifest.Inputs)
        {
            io.Add("input", t.Name, t.Datatype.ToString(), t.ShapeText);
        }
        foreach (var t in manifest.Outputs)
        {
            io.Add("output", t.Name, t.Datatype.ToString(), t.ShapeText);
        }
        io.WriteTo(_out);
        return ExitCodes.Ok;
    }

    private async Task<int> DeployAsync(MedServeClient client, string name, string version, DeploymentSpec spec, bool wait)
    {
        var info = await client.DeployAsync(name, version, spec, wait);
        return await ReportDeploymentAsync(client, info, wait);
    }

    private async Task<int> ScaleAsync(MedServeClient client, ApiKeyInfo me, string name, string version, int replicas, bool wait)
    {
        if (!Roles.PermissionsOf(me.Role).Contains(Permissions.ManageModels))
        {
            var current = await client.GetDeploymentAsync(name, version);
            DeploymentRules.ForOperator(current, current.Spec with { Replicas = replicas });
        }
        var info = await client.ScaleAsync(name, version, replicas, wait);
        return await ReportDeploymentAsync(client, info, wait);
    }

    private async Task<int> UndeployAsync(MedServeClient client, string name, string version)
    {
        var info = await client.UndeployAsync(name, version);
        return await ReportDeploymentAsync(client, info, wait: false);
    }

    private async Task<int> ReportDeploymentAsync(MedServeClient client, DeploymentInfo info, bool wait)
    {
        var json = _jsonOutput;
        if (json)
        {
            WriteJson(info);
        }
        else
        {
            WriteDeployment(info);
        }
        return wait ? await SettledAsync(info, json) : ExitCodes.Ok;
    }

    /// <summary>A deployment waited for must end Ready; Failed or Pending is exit 5 with the reason.</summary>
    private async Task<int> SettledAsync(DeploymentInfo info, bool json) =>
        info.State == DeploymentState.Ready
            ? ExitCodes.Ok
            : await FailAsync(json, ExitCodes.Unavailable, nameof(ErrorKind.NotReady),
                $"{info.Model}:{info.Version} is {info.State}{(info.Reason is null ? "" : $": {info.Reason}")}", null);

    private async Task<int> InferAsync(MedServeClient client, string name, string? version, string? data, string[] inputs)
    {
        var request = InferInputs.Parse(data, inputs, Environment.CurrentDirectory);
        var response = await client.InferAsync(name, request, version);
        _out.WriteLine(InferInputs.ToJson(response));
        return ExitCodes.Ok;
    }

    private async Task<int> SilosAsync(MedServeClient client)
    {
        var silos = await client.ListSilosAsync();
        if (_jsonOutput)
        {
            WriteJson(silos);
            return ExitCodes.Ok;
        }
        var table = new Table("ADDRESS", "NAME", "STATUS", "ACCELERATOR", "PROVIDER", "LABELS", "REPLICAS");
        foreach (var s in silos)
        {
            table.Add(s.Address, s.Name, s.Status, s.Accelerator, s.ExecutionProvider,
                string.Join(",", s.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}")),
                string.Join(",", s.Replicas.Order(StringComparer.Ordinal)));
        }
        table.WriteTo(_out);
        foreach (var s in silos.Where(s => s.ExecutionProviderFallback is not null))
        {
            _out.WriteLine($"{s.Address} runs {s.ExecutionProvider}: {s.ExecutionProviderFallback}");
        }
        return ExitCodes.Ok;
    }

    private async Task<int> StatusAsync(MedServeClient client, string? name, string? version)
    {
        if (name is not null && version is not null)
        {
            var one = await client.GetDeploymentAsync(name, version);
            if (_jsonOutput)
            {
                WriteJson(one);
            }
            else
            {
                WriteDeployment(one);
            }
            return ExitCodes.Ok;
        }
        if (name is not null)
        {
            await client.GetModelAsync(name);
        }
        var deployments = (await client.ListDeploymentsAsync())
            .Where(d => name is null || d.Model == name)
            .OrderBy(d => d.Model, StringComparer.Ordinal).ThenBy(d => d.Version, StringComparer.Ordinal)
            .ToArray();
        if (_jsonOutput)
        {
            WriteJson(deployments);
            return ExitCodes.Ok;
        }
        var table = new Table("MODEL", "VERSION", "STATE", "REPLICAS", "ACCELERATOR", "SILOS", "REASON");
        foreach (var d in deployments)
        {
            table.Add(d.Model, d.Version, d.State.ToString(), $"{d.Replicas.Length}/{d.Spec.Replicas}", d.Spec.Accelerator ?? "manifest",
                string.Join(",", d.Replicas.Select(r => r.Silo).Distinct(StringComparer.Ordinal)), d.Reason);
        }
        table.WriteTo(_out);
        return ExitCodes.Ok;
    }

    private void WriteDeployment(DeploymentInfo d)
    {
        _out.WriteLine($"{d.Model}:{d.Version} {d.State}{(d.Reason is null ? "" : $": {d.Reason}")} ({d.Replicas.Length}/{d.Spec.Replicas} replicas, accelerator {d.Spec.Accelerator ?? "from manifest"})");
        foreach (var r in d.Replicas)
        {
            _out.WriteLine($"  replica {r.Key} on {r.Silo} ({r.ExecutionProvider})");
        }
        if (d.Validation is { } v)
        {
            _out.WriteLine($"  validation: {v.Summary}");
        }
    }

    private void WriteJson<T>(T value) => _out.WriteLine(JsonSerializer.Serialize(value, ManifestJson.Options));
}
