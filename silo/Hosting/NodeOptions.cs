namespace MedServe.Silo.Hosting;

/// <summary>The node's settings: section <c>MedServe</c>, or the command-line switches listed in <see cref="MedServeNode.Switches"/>.</summary>
public sealed class NodeOptions
{
    /// <summary>Directory for grain state and model artifacts (<c>--data</c>).</summary>
    public string Data { get; set; } = ".medserve";

    /// <summary>Package directories imported and deployed at start (<c>--import</c>, comma-separated); "auto" finds the repo's samples/.</summary>
    public string Import { get; set; } = "auto";

    /// <summary>Orleans silo-to-silo port (<c>--silo-port</c>); 0 takes 11111, or a free port when that is taken.</summary>
    public int SiloPort { get; set; }

    /// <summary>Orleans gateway port for grain clients (<c>--gateway-port</c>); 0 takes 30000, or a free port when taken.</summary>
    public int GatewayPort { get; set; }

    /// <summary>Cluster membership: empty for the embedded single node, or <c>redis://host:port</c> (<c>--cluster</c>).</summary>
    public string Cluster { get; set; } = "";

    /// <summary>Cluster id shared by the silos and clients of one cluster (<c>--cluster-id</c>).</summary>
    public string ClusterId { get; set; } = ClusterAddress.DefaultClusterId;

    /// <summary>The address other silos and clients reach this silo at, in cluster mode (<c>--advertise</c>).</summary>
    public string Advertise { get; set; } = "127.0.0.1";

    /// <summary>The Redis endpoint of <see cref="Cluster"/>, or null in embedded mode; a malformed value is a start-up error.</summary>
    public string? RedisEndpoint() => ClusterAddress.RedisEndpoint(Cluster);

    /// <summary>
    /// Seconds a graceful stop keeps serving while reporting not ready, before it closes the listener (<c>--drain-seconds</c>);
    /// unset: 5 in cluster mode (other silos can take the traffic), 0 for the embedded node.
    /// </summary>
    public int? DrainSeconds { get; set; }

    /// <summary><see cref="DrainSeconds"/>, or its default for the mode; never negative.</summary>
    public int EffectiveDrainSeconds => Math.Max(0, DrainSeconds ?? (string.IsNullOrWhiteSpace(Cluster) ? 0 : 5));

    /// <summary>Largest V2 infer request body in bytes; larger ones get 413.</summary>
    public long MaxInferBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>ONNX Runtime intra-op threads per session.</summary>
    public int IntraOpThreads { get; set; } = 1;

    /// <summary><c>gpu</c>, <c>cpu</c>, or <c>auto</c> to probe (CUDA provider present and a device visible) (<c>--accelerator</c>).</summary>
    public string Accelerator { get; set; } = "auto";

    /// <summary>Free-form labels published as silo metadata, <c>key=value</c> comma-separated (<c>--label zone=a,rack=3</c>).</summary>
    public string Labels { get; set; } = "";

    /// <summary>The labels as a dictionary; a malformed entry is a start-up error naming it.</summary>
    public IReadOnlyDictionary<string, string> ParseLabels()
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in Labels.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = entry.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == entry.Length - 1)
            {
                throw new ArgumentException($"--label '{entry}' must be key=value");
            }
            labels[entry[..eq]] = entry[(eq + 1)..];
        }
        return labels;
    }
}
