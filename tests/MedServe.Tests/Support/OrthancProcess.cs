using System.Diagnostics;
using System.Text.Json.Nodes;

namespace MedServe.Tests.Support;

/// <summary>
/// A real DICOM peer no one here wrote: Debian's Orthanc with its DICOMweb plugin, on free loopback ports, with one
/// DICOMweb server configured (MedServe's <c>/dicomweb/</c>, with an API key). Stopped and its storage removed when
/// disposed.
/// </summary>
public sealed class OrthancProcess : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/Orthanc";
    public const string DicomWebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

    private readonly Process _process;
    private readonly string _directory;

    private System.Collections.Concurrent.ConcurrentQueue<string> _log = new();

    /// <summary>What Orthanc printed so far (for failure messages).</summary>
    public string Log => string.Join('\n', _log);

    private OrthancProcess(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    }

    /// <summary>Orthanc's REST API (no authentication: it listens on loopback only).</summary>
    public HttpClient Http { get; }

    /// <summary>Starts Orthanc with MedServe (at <paramref name="medserve"/>, called with <paramref name="key"/>) as DICOMweb server <c>medserve</c>.</summary>
    public static async Task<OrthancProcess> StartAsync(Uri medserve, string key)
    {
        if (!File.Exists(Binary) || !File.Exists(DicomWebPlugin))
        {
            throw new InvalidOperationException("Orthanc with its DICOMweb plugin is missing: ./test.sh installs it (apt-get install orthanc orthanc-dicomweb)");
        }
        var directory = Paths.TempDirectory("orthanc");
        var port = NodeProcess.FreePort();
        var config = new JsonObject
        {
            ["Name"] = "MedServeTestPeer",
            ["HttpPort"] = port,
            ["DicomPort"] = NodeProcess.FreePort(),
            ["RemoteAccessAllowed"] = false,
            ["AuthenticationEnabled"] = false,
            ["StorageDirectory"] = Path.Combine(directory, "storage"),
            ["IndexDirectory"] = Path.Combine(directory, "index"),
            ["Plugins"] = new JsonArray(DicomWebPlugin),
            ["DicomWeb"] = new JsonObject
            {
                ["Enable"] = true,
                ["Root"] = "/dicom-web/",
                ["Servers"] = new JsonObject
                {
                    ["medserve"] = new JsonObject
                    {
                        ["Url"] = new Uri(medserve, "/dicomweb/").ToString(),
                        ["HttpHeaders"] = new JsonObject { ["Authorization"] = "Bearer " + key },
                    },
                },
            },
        };
        var configPath = Path.Combine(directory, "orthanc.json");
        await File.WriteAllTextAsync(configPath, config.ToJsonString());
        var process = Process.Start(new ProcessStartInfo(Binary, [configPath])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        void OnLine(object _, DataReceivedEventArgs e)
        {
            if (e.Data is null)
            {
                return;
            }
            log.Enqueue(e.Data);
            if (e.Data.Contains("Orthanc has started", StringComparison.Ordinal))
            {
                started.TrySetResult();
            }
        }
        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        process.Exited += (_, _) => started.TrySetException(new InvalidOperationException("Orthanc exited at start:\n" + string.Join('\n', log)));
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var orthanc = new OrthancProcess(process, directory, port) { _log = log };
        try
        {
            await started.Task.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch
        {
            await orthanc.DisposeAsync();
            throw;
        }
        return orthanc;
    }

    /// <summary>Loads a DICOM file (<c>POST /instances</c>) and answers Orthanc's ids of it (instance, study).</summary>
    public async Task<(string Instance, string Study)> UploadAsync(byte[] file)
    {
        using var response = await Http.PostAsync("/instances", new ByteArrayContent(file));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"Orthanc refused a test file: {(int)response.StatusCode} {body}");
        var json = JsonNode.Parse(body)!;
        return (json["ID"]!.GetValue<string>(), json["ParentStudy"]!.GetValue<string>());
    }

    /// <summary>Tells Orthanc to send a study to MedServe over STOW-RS (<c>/dicom-web/servers/medserve/stow</c>); answers Orthanc's status and body.</summary>
    public async Task<(int Status, string Body)> StowAsync(string study)
    {
        var request = new JsonObject { ["Resources"] = new JsonArray(study) };
        using var response = await Http.PostAsync("/dicom-web/servers/medserve/stow", new StringContent(request.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
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
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A file still held open by the dying process: the temp directory is cleaned with the run's.
        }
    }
}
