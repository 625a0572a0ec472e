using System.Net;
using MedServe.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace MedServe.Client;

/// <summary>Where the cluster is: static gateways (the embedded node's default) or a Redis-membership cluster.</summary>
public sealed record MedServeClientOptions
{
    /// <summary>Gateway endpoints of an embedded node or static cluster (<c>host:port</c>); the embedded default is 127.0.0.1:30000. Ignored when <see cref="Cluster"/> is set.</summary>
    public IReadOnlyList<string> Gateways { get; init; } = ["127.0.0.1:30000"];

    /// <summary>
    /// A cluster whose silos were started with <c>--cluster redis://host:port</c>: the client reads the gateways from the
    /// same Redis membership table. Empty: connect to <see cref="Gateways"/>.
    /// </summary>
    public string? Cluster { get; init; }

    /// <summary>The Orleans ClusterId; null takes the silos' default (<c>medserve-embedded</c> for gateways, <c>medserve</c> for a Redis cluster, as <c>--cluster-id</c> defaults).</summary>
    public string? ClusterId { get; init; }

    public string ServiceId { get; init; } = ClusterAddress.ServiceId;

    /// <summary>How long to keep trying to reach a gateway before giving up.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long <c>wait</c> on deploy and scale waits for the deployment to settle.</summary>
    public TimeSpan DeployTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>The ClusterId used: <see cref="ClusterId"/>, else the default of the cluster kind.</summary>
    public string EffectiveClusterId => ClusterId ?? (string.IsNullOrWhiteSpace(Cluster) ? ClusterAddress.EmbeddedClusterId : ClusterAddress.DefaultClusterId);

    /// <summary>Where this connects, for messages.</summary>
    public string Describe() => string.IsNullOrWhiteSpace(Cluster) ? string.Join(", ", Gateways) : $"{Cluster} (cluster id '{EffectiveClusterId}')";
}

/// <summary>
/// A .NET service's handle on a MedServe cluster: infer with typed tensors; push, list, deploy, scale and inspect models.
/// Requests go straight to a ready replica (one grain hop), routed exactly as the HTTP front end routes them.
/// Failures are <see cref="MedServeException"/>s with the same <see cref="ErrorKind"/>s the HTTP API maps to statuses.
/// </summary>
public sealed class MedServeClient : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly ModelRouter _router;
    private readonly MedServeClientOptions _options;

    private MedServeClient(IHost host, MedServeClientOptions options)
    {
        _host = host;
        _options = options;
        Grains = host.Services.GetRequiredService<IClusterClient>();
        _router = new ModelRouter(Grains);
    }

    /// <summary>The Orleans client, for calls this class does not wrap.</summary>
    public IClusterClient Grains { get; }

    /// <summary>Connects to the cluster; fails with a NotReady <see cref="MedServeException"/> when no gateway answers.</summary>
    public static async Task<MedServeClient> ConnectAsync(MedServeClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new MedServeClientOptions();
        string? redis;
        try
        {
            redis = ClusterAddress.RedisEndpoint(options.Cluster);
        }
        catch (ArgumentException e)
        {
            throw MedServeException.Invalid(e.Message, "cluster");
        }
        var gateways = redis is null ? options.Gateways.Select(ParseEndpoint).ToArray() : [];
        if (redis is null && await NoneListensAsync(gateways, options.ConnectTimeout, cancellationToken) is { } refused)
        {
            throw new MedServeException(ErrorKind.NotReady, $"could not connect to MedServe at {options.Describe()}: {refused}");
        }
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleansClient(client => UseCluster(client, options));
        var host = builder.Build();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        try
        {
            await host.StartAsync(timeout.Token);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            host.Dispose();
            var why = e is OperationCanceledException ? $"no gateway answered within {options.ConnectTimeout.TotalSeconds:0} s" : e.Message;
            throw new MedServeException(ErrorKind.NotReady, $"could not connect to MedServe at {options.Describe()}: {why}");
        }
        return new MedServeClient(host, options);
    }

    /// <summary>
    /// Points an Orleans client at the cluster <paramref name="options"/> name: static gateways or a Redis membership
    /// table. The one home of this setting for the library, the CLI and the separate dashboard host.
    /// </summary>
    public static IClientBuilder UseCluster(IClientBuilder client, MedServeClientOptions options)
    {
        string? redis;
        try
        {
            redis = ClusterAddress.RedisEndpoint(options.Cluster);
        }
        catch (ArgumentException e)
        {
            throw MedServeException.Invalid(e.Message, "cluster");
        }
        if (redis is null)
        {
            client.UseStaticClustering(options.Gateways.Select(ParseEndpoint).ToArray());
        }
        else
        {
            client.UseRedisClustering(o =>
            {
                o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(redis);
                // Fail fast when Redis is not there: a CLI should say so, not hang.
                o.ConfigurationOptions.ConnectTimeout = (int)Math.Min(options.ConnectTimeout.TotalMilliseconds, 5000);
                o.ConfigurationOptions.AbortOnConnectFail = false;
            });
            // Learn of silos joining and leaving in seconds, as the silos' tuned membership does.
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5));
        }
        client.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = options.EffectiveClusterId;
            o.ServiceId = options.ServiceId;
        });
        // A call that times out tells its grain: a replica then skips the request instead of running it for nobody.
        client.Configure<ClientMessagingOptions>(o => o.CancelRequestOnTimeout = true);
        // The caller's trace (Activity.Current) crosses into the cluster: a service that records sources "MedServe" and
        // "Microsoft.Orleans.Application" sees its request down to the replica's run. Without a listener it costs a check.
        client.AddActivityPropagation();
        return client;
    }

    /// <summary>Runs one request on <paramref name="model"/> (its default version unless <paramref name="version"/> is given).</summary>
    public Task<InferenceResponse> InferAsync(string model, InferenceRequest request, string? version = null) =>
        _router.InferAsync(model, version, request);

    /// <summary>Runs one tensor through a single-input model and returns its outputs by name.</summary>
    public async Task<IReadOnlyDictionary<string, Tensor>> InferAsync<T>(string model, string input, long[] shape, ReadOnlyMemory<T> values, string? version = null)
        where T : unmanaged
    {
        var response = await InferAsync(model, new InferenceRequest([TensorTypes.Create(input, shape, values.Span)]), version);
        return response.Outputs.ToDictionary(o => o.Name);
    }

    /// <summary>
    /// Registers a model package: a directory holding <c>manifest.json</c> and <c>model.onnx</c>, or a zip of them.
    /// The silo checks it exactly as an HTTP upload; a bad package is InvalidInput naming the field, an existing version a Conflict.
    /// </summary>
    public async Task<ModelVersionInfo> PushAsync(string path, CancellationToken cancellationToken = default)
    {
        var upload = Grains.GetGrain<IPackageUploadGrain>(0);
        if (Directory.Exists(path))
        {
            var manifest = Path.Combine(path, "manifest.json");
            var model = Path.Combine(path, "model.onnx");
            if (!File.Exists(manifest))
            {
                throw MedServeException.Invalid($"{path} has no manifest.json", "manifest");
            }
            if (!File.Exists(model))
            {
                throw MedServeException.Invalid($"{path} has no model.onnx", "model");
            }
            return await upload.UploadPartsAsync(
                await File.ReadAllBytesAsync(manifest, cancellationToken),
                await File.ReadAllBytesAsync(model, cancellationToken));
        }
        if (File.Exists(path))
        {
            return await PushAsync(await File.ReadAllBytesAsync(path, cancellationToken));
        }
        throw MedServeException.Invalid($"{path} is neither a package directory nor a zip file", "path");
    }

    /// <summary>Registers a model package given as zip bytes (<c>manifest.json</c> and <c>model.onnx</c>).</summary>
    public Task<ModelVersionInfo> PushAsync(byte[] zip) => Grains.GetGrain<IPackageUploadGrain>(0).UploadZipAsync(zip);

    /// <summary>Registered models and their versions.</summary>
    public async Task<ModelInfo[]> ListModelsAsync()
    {
        var names = await Grains.GetGrain<ICatalogGrain>(0).ListModelsAsync();
        var models = await Task.WhenAll(names.Select(n => Grains.GetGrain<IModelGrain>(n).GetAsync()));
        return [.. models.OfType<ModelInfo>()];
    }

    /// <summary>One model and its versions; NotFound when nothing is registered under <paramref name="model"/>.</summary>
    public async Task<ModelInfo> GetModelAsync(string model) =>
        (ModelNames.IsValidName(model) ? await Grains.GetGrain<IModelGrain>(model).GetAsync() : null)
        ?? throw MedServeException.NotFound($"unknown model '{model}'");

    /// <summary>One version's model card (manifest, SHA-256, size); NotFound when it is not registered.</summary>
    public async Task<ModelVersionInfo> GetVersionAsync(string model, string version)
    {
        if (!ModelNames.IsValidName(model))
        {
            throw MedServeException.NotFound($"unknown model '{model}'");
        }
        return (ModelNames.IsValidVersion(version) ? await Grains.GetGrain<IModelGrain>(model).GetVersionAsync(version) : null)
            ?? throw MedServeException.NotFound($"model '{model}' has no version '{version}'");
    }

    /// <summary>Deploys (or re-specs) a registered version; with <paramref name="wait"/> returns once it has settled (Ready, Failed or Pending).</summary>
    public async Task<DeploymentInfo> DeployAsync(string model, string version, DeploymentSpec? spec = null, bool wait = true)
    {
        await GetVersionAsync(model, version);
        var deployment = Deployment(model, version);
        var info = await deployment.DeployAsync(spec ?? new DeploymentSpec());
        _router.Invalidate(model);
        return wait ? await deployment.WaitSettledAsync(_options.DeployTimeout) : info;
    }

    /// <summary>
    /// Re-deploys a deployed version with <paramref name="replicas"/> replicas, keeping the rest of its spec
    /// (accelerator, batching). NotFound when the version is not deployed.
    /// </summary>
    public async Task<DeploymentInfo> ScaleAsync(string model, string version, int replicas, bool wait = true)
    {
        var current = await GetDeploymentAsync(model, version);
        if (current.State == DeploymentState.Unloaded)
        {
            throw MedServeException.NotFound($"{model}:{version} is not deployed; deploy it first");
        }
        return await DeployAsync(model, version, current.Spec with { Replicas = replicas }, wait);
    }

    /// <summary>Stops serving a version and frees its sessions; NotFound when it is not deployed.</summary>
    public async Task<DeploymentInfo> UndeployAsync(string model, string version)
    {
        await GetVersionAsync(model, version);
        var info = await Deployment(model, version).UndeployAsync();
        _router.Invalidate(model);
        return info;
    }

    /// <summary>A version's deployment: state, reason, spec, replicas; NotFound when the version is not registered.</summary>
    public async Task<DeploymentInfo> GetDeploymentAsync(string model, string version)
    {
        await GetVersionAsync(model, version);
        return await Deployment(model, version).GetAsync();
    }

    /// <summary>Every deployment that is wanted, with its state and replicas.</summary>
    public async Task<DeploymentInfo[]> ListDeploymentsAsync()
    {
        var keys = await Grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
        return await Task.WhenAll(keys.Select(k => Grains.GetGrain<IDeploymentGrain>(k).GetAsync()));
    }

    /// <summary>
    /// Starts an async job (its items run at job priority, behind online requests) and returns at once; watch it with
    /// <see cref="GetJobAsync"/>. <paramref name="id"/> defaults to a new one.
    /// </summary>
    public Task<JobInfo> SubmitJobAsync(JobSubmission submission, string? id = null) =>
        Grains.GetGrain<IJobGrain>(id ?? Guid.NewGuid().ToString("N")[..16]).SubmitAsync(submission);

    /// <summary>
    /// Starts a job of tabular records: one item per CSV row (see <c>CsvRecords</c> for the columns).
    /// <paramref name="owner"/>, a key id, is whose job it is (who may see it over HTTP and the CLI).
    /// </summary>
    public async Task<JobInfo> SubmitCsvJobAsync(string model, byte[] csv, string? version = null, string[]? columns = null, string[]? outputs = null, string? id = null, string? owner = null) =>
        await SubmitJobAsync(await CsvRecords.SubmissionAsync(Grains, _router, model, version, csv, columns, outputs) with { Owner = owner }, id);

    /// <summary>A job and its progress (answered, failed, rate, ETA).</summary>
    public async Task<JobInfo> GetJobAsync(string id) =>
        await Grains.GetGrain<IJobGrain>(id).GetAsync() ?? throw MedServeException.NotFound("no such job");

    /// <summary>Every job the cluster keeps, running or ended, newest first: summaries from the job index (no job is woken).</summary>
    public Task<JobInfo[]> ListJobsAsync() => Grains.GetGrain<IJobIndexGrain>(0).ListAsync();

    public Task<JobInfo> CancelJobAsync(string id) => Grains.GetGrain<IJobGrain>(id).CancelAsync();

    /// <summary>Answers so far, in item order: outputs, or the item's own error.</summary>
    public Task<JobItemResult[]> GetJobResultsAsync(string id) => Grains.GetGrain<IJobGrain>(id).GetResultsAsync();

    /// <summary>Deletes a job with its stored items and results.</summary>
    public Task DeleteJobAsync(string id) => Grains.GetGrain<IJobGrain>(id).DeleteAsync();

    /// <summary>The cluster's silos with their capability tags and the replicas each hosts.</summary>
    public Task<SiloInfo[]> ListSilosAsync() => Grains.GetGrain<IClusterInfoGrain>(0).ListSilosAsync();

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }

    private IDeploymentGrain Deployment(string model, string version) => Grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(model, version));

    /// <summary>
    /// Why no gateway accepts a TCP connection, or null when one does. Orleans would retry a refused gateway until the
    /// connect timeout; a port where nothing listens is worth saying at once.
    /// </summary>
    private static async Task<string?> NoneListensAsync(IPEndPoint[] gateways, TimeSpan timeout, CancellationToken cancellationToken)
    {
        string? why = null;
        foreach (var gateway in gateways)
        {
            using var socket = new System.Net.Sockets.Socket(gateway.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            using var probe = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            probe.CancelAfter(timeout < TimeSpan.FromSeconds(5) ? timeout : TimeSpan.FromSeconds(5));
            try
            {
                await socket.ConnectAsync(gateway, probe.Token);
                return null;
            }
            catch (System.Net.Sockets.SocketException e)
            {
                why = $"{gateway}: {e.SocketErrorCode}";
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // No answer at all (filtered?): let Orleans try within the connect timeout.
                return null;
            }
        }
        return why is null ? null : $"nothing accepts connections ({why})";
    }

    private static IPEndPoint ParseEndpoint(string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw MedServeException.Invalid($"gateway '{text}' must be host:port", "gateway");
        }
        var host = text[..colon];
        IPAddress address;
        if (IPAddress.TryParse(host, out var ip))
        {
            address = ip;
        }
        else
        {
            try
            {
                address = Dns.GetHostAddresses(host).First();
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or InvalidOperationException)
            {
                throw MedServeException.NotReady($"gateway host '{host}' does not resolve: {e.Message}");
            }
        }
        return new IPEndPoint(address, port);
    }
}
