using System.Diagnostics;
using System.Text;
using MedServe.Tests.Support;
using static Microsoft.Playwright.Assertions;

namespace MedServe.Tests.Browser;

/// <summary>
/// The web app on its own host (<c>medserve-dashboard</c>, an Orleans client) beside a Redis cluster of two silo
/// processes: its placement page shows both silos and the samples' replicas, and its latency page the whole cluster.
/// </summary>
public sealed class DashboardHostTests
{
    [Fact]
    public async Task The_separate_dashboard_host_sees_every_silo_of_a_redis_cluster()
    {
        await using var redis = await RedisProcess.StartAsync();
        var dataA = Paths.TempDirectory("dash-a");
        var dataB = Paths.TempDirectory("dash-b");
        try
        {
            var (startA, startB) = (
                NodeProcess.StartAsync(dataA, Paths.Samples, NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu"),
                NodeProcess.StartAsync(dataB, "none", NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "gpu", "--label", "zone=b"));
            await using var a = await startA;
            await using var b = await startB;
            var port = NodeProcess.FreePort();
            using var dashboard = await StartDashboardAsync(redis.Url, port);
            await using var browser = await BrowserSession.StartAsync();
            var page = await browser.NewPageAsync($"http://127.0.0.1:{port}");
            await BrowserSession.SignInAsync(page, NodeFixture.AdminKey);

            await page.GotoAsync("/cluster");
            await Expect(page.Locator(".silo[data-status=Active]")).ToHaveCountAsync(2, new() { Timeout = 30_000 });
            await Expect(page.Locator(".silo [data-accelerator=gpu]")).ToHaveCountAsync(1);
            await Expect(page.Locator(".silo [data-replica^='breast-cancer-logreg/1/']")).ToHaveCountAsync(1);
            await BrowserSession.ScreenshotAsync(page, "20-dashboard-host-placement");

            // This host carries no DICOM decoder (no GDCM, no worker processes): a DICOM job is a 415 that says so, while
            // stored studies (grain reads only) list here as on a silo.
            using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") })
            {
                http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
                var file = new ByteArrayContent(File.ReadAllBytes(Paths.Data("dicom", "MR_small.dcm")));
                file.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/dicom");
                using var refused = await http.PostAsync("/api/jobs?model=ct-mr-classifier", file);
                Assert.Equal(415, (int)refused.StatusCode);
                Assert.Contains("this host does not decode DICOM", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                using var studies = await http.GetAsync("/api/studies");
                Assert.Equal(200, (int)studies.StatusCode);
            }

            // A request through each silo's V2 front end: the latency page adds both silos' figures.
            for (var k = 0; k < 3; k++)
            {
                foreach (var node in new[] { a, b })
                {
                    using var response = await node.Http.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(
                        """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""", Encoding.UTF8, "application/json"));
                    Assert.Equal(200, (int)response.StatusCode);
                }
            }
            await page.GotoAsync("/latency");
            await Expect(page.Locator("#latency-table tbody tr", new() { HasText = "diabetes-linear" }).Locator("[data-requests='6']")).ToBeVisibleAsync();
            await BrowserSession.ScreenshotAsync(page, "21-dashboard-host-latency");

            // A silo that joins shows up, and one that dies leaves, without reloading the page.
            await page.GotoAsync("/cluster");
            var dataC = Paths.TempDirectory("dash-c");
            try
            {
                await using (var c = await NodeProcess.StartAsync(dataC, "none", NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(), "--cluster", redis.Url, "--accelerator", "cpu", "--label", "zone=c"))
                {
                    await Expect(page.Locator(".silo[data-status=Active]")).ToHaveCountAsync(3, new() { Timeout = 30_000 });
                    await c.KillAsync();
                    await Expect(page.Locator(".silo")).ToHaveCountAsync(2, new() { Timeout = 30_000 });
                }
            }
            finally
            {
                Directory.Delete(dataC, recursive: true);
            }
            await BrowserSession.ScreenshotAsync(page, "22-dashboard-host-after-a-silo-died");
        }
        finally
        {
            Directory.Delete(dataA, recursive: true);
            Directory.Delete(dataB, recursive: true);
        }
    }

    /// <summary>Starts the built medserve-dashboard and waits until it prints its URL.</summary>
    private static async Task<DashboardProcess> StartDashboardAsync(string cluster, int port)
    {
        var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var dll = Path.Combine(Paths.Repo, "dashboard", "Host", "bin", tfm.Parent!.Name, tfm.Name, "medserve-dashboard.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Path.GetTempPath() };
        start.Environment["MEDSERVE_ADMIN_KEY"] = NodeFixture.AdminKey;
        foreach (var arg in new[] { dll, "--cluster", cluster, "--urls", $"http://127.0.0.1:{port}" })
        {
            start.ArgumentList.Add(arg);
        }
        var process = new Process { StartInfo = start };
        var output = new StringBuilder();
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(string? line)
        {
            lock (output)
            {
                output.AppendLine(line);
            }
            if (line?.Contains("MedServe web app:", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult();
            }
        }
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var first = await Task.WhenAny(ready.Task, process.WaitForExitAsync(), Task.Delay(TimeSpan.FromMinutes(1)));
        if (first != ready.Task)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException("medserve-dashboard did not start:\n" + output);
        }
        return new DashboardProcess(process);
    }

    /// <summary>The dashboard process, killed (with its children) when the test ends.</summary>
    private sealed class DashboardProcess(Process process) : IDisposable
    {
        public void Dispose()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
            process.Dispose();
        }
    }
}
