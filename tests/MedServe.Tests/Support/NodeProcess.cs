using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MedServe.Tests.Support;

/// <summary>
/// The embedded node as a real process (<c>dotnet medserve-silo.dll</c>) on loopback ports picked at random.
/// Waits on what the process prints, not on a clock; always kills what it started.
/// </summary>
public sealed class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly List<(string Text, TaskCompletionSource Seen)> _waiters = [];

    private NodeProcess(Process process, int httpPort)
    {
        _process = process;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
    }

    public HttpClient Http { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static string SiloAssembly
    {
        get
        {
            // tests/MedServe.Tests/bin/<Configuration>/net10.0/ -> silo/bin/<Configuration>/net10.0/
            var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            return Path.Combine(Paths.Repo, "silo", "bin", tfm.Parent!.Name, tfm.Name, "medserve-silo.dll");
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts a node and waits until it reports ready.</summary>
    public static Task<NodeProcess> StartAsync(string dataDirectory, string import, int httpPort, int siloPort, int gatewayPort, params string[] extraArgs) =>
        StartBuildAsync(SiloAssembly, dataDirectory, import, httpPort, siloPort, gatewayPort, extraArgs);

    /// <summary>Starts a node from another build of the silo (the cuda build) and waits until it reports ready.</summary>
    public static async Task<NodeProcess> StartBuildAsync(string siloAssembly, string dataDirectory, string import, int httpPort, int siloPort, int gatewayPort, params string[] extraArgs)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dataDirectory,
        };
        string[] args =
        [
            siloAssembly, "--urls", $"http://127.0.0.1:{httpPort}", "--data", dataDirectory, "--import", import,
            "--silo-port", siloPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--gateway-port", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            .. extraArgs,
        ];
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        start.Environment["MEDSERVE_ADMIN_KEY"] = NodeFixture.AdminKey;
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var node = new NodeProcess(process, httpPort);
        process.OutputDataReceived += (_, e) => node.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => node.OnLine(e.Data);
        var ready = node.WhenPrinted("MedServe node ready");
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExitAsync();
        var first = await Task.WhenAny(ready, exited, Task.Delay(TimeSpan.FromMinutes(2)));
        if (first != ready)
        {
            var output = node.Output;
            await node.DisposeAsync();
            throw new InvalidOperationException($"node did not report ready ({(first == exited ? "it exited" : "timed out after 2 min")}); output:\n{output}");
        }
        return node;
    }

    /// <summary>Completes when the process prints a line containing <paramref name="text"/>.</summary>
    public Task WhenPrinted(string text)
    {
        lock (_output)
        {
            if (_output.ToString().Contains(text, StringComparison.Ordinal))
            {
                return Task.CompletedTask;
            }
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((text, tcs));
            return tcs.Task;
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.AppendLine(line);
            foreach (var w in _waiters.Where(w => line.Contains(w.Text, StringComparison.Ordinal)).ToList())
            {
                w.Seen.TrySetResult();
                _waiters.Remove(w);
            }
        }
    }

    /// <summary>SIGTERM, as an operator's <c>kill</c> or systemd's stop does; waits for the exit.</summary>
    public async Task StopGracefullyAsync()
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
    }

    /// <summary><c>kill -9</c>: no chance to flush or say goodbye.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
