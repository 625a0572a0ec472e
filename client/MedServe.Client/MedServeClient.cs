using System.Net;
using MedServe.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace MedServe.Client;

/// <summary>Where the cluster is.</summary>
public sealed record MedServeClientOptions
{
    /// <summary>Gateway endpoints of an embedded node or static cluster (<c>host:port</c>); the embedded default is 127.0.0.1:30000.</summary>
    public IReadOnlyList<string> Gateways { get; init; } = ["127.0.0.1:30000"];

    public string ClusterId { get; init; } = "medserve-embedded";

    public string ServiceId { get; init; } = "medserve";

    /// <summary>How long to keep trying to reach a gateway before giving up.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);
}

/// <summary>
/// A .NET service's handle on a MedServe cluster: infer with typed tensors, list and deploy models.
/// Requests go straight to a ready replica (one grain hop), routed exactly as the HTTP front end routes them.
/// </summary>
public sealed class MedServeClient : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly ModelRouter _router;

    private MedServeClient(IHost host)
    {
        _host = host;
        Grains = host.Services.GetRequiredService<IClusterClient>();
        _router = new ModelRouter(Grains);
    }

    /// <summary>The Orleans client, for calls this class does not wrap.</summary>
    public IClusterClient Grains { get; }

    /// <summary>Connects to the cluster; fails with a clear message when no gateway answers.</summary>
    public static async Task<MedServeClient> ConnectAsync(MedServeClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new MedServeClientOptions();
        var gateways = options.Gateways.Select(ParseEndpoint).ToArray();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(gateways);
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = options.ClusterId;
                o.ServiceId = options.ServiceId;
            });
        });
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
            throw new MedServeException(ErrorKind.NotReady, $"could not connect to MedServe at {string.Join(", ", options.Gateways)}: {why}");
        }
        return new MedServeClient(host);
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

    /// <summary>Registered models and their versions.</summary>
    public async Task<ModelInfo[]> ListModelsAsync()
    {
        var names = await Grains.GetGrain<ICatalogGrain>(0).ListModelsAsync();
        var models = await Task.WhenAll(names.Select(n => Grains.GetGrain<IModelGrain>(n).GetAsync()));
        return [.. models.OfType<ModelInfo>()];
    }

    /// <summary>Deploys a registered version; with <paramref name="wait"/> returns once it is Ready or Failed.</summary>
    public async Task<DeploymentInfo> DeployAsync(string model, string version, DeploymentSpec? spec = null, bool wait = true)
    {
        var deployment = Grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(model, version));
        var info = await deployment.DeployAsync(spec ?? new DeploymentSpec());
        _router.Invalidate(model);
        return wait ? await deployment.WaitSettledAsync(TimeSpan.FromMinutes(2)) : info;
    }

    public async Task<DeploymentInfo> UndeployAsync(string model, string version)
    {
        var info = await Grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(model, version)).UndeployAsync();
        _router.Invalidate(model);
        return info;
    }

    public Task<DeploymentInfo> GetDeploymentAsync(string model, string version) =>
        Grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(model, version)).GetAsync();

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }

    private static IPEndPoint ParseEndpoint(string text)
    {
        var colon = text.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(text[(colon + 1)..], out var port))
        {
            throw new ArgumentException($"gateway '{text}' must be host:port", nameof(text));
        }
        var host = text[..colon];
        var address = IPAddress.TryParse(host, out var ip) ? ip : Dns.GetHostAddresses(host).First();
        return new IPEndPoint(address, port);
    }
}
