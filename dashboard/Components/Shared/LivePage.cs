using Microsoft.AspNetCore.Components;

namespace MedServe.Dashboard.Components.Shared;

/// <summary>
/// A page that shows live state: refreshes once at first render, then every <see cref="Period"/> on a
/// <see cref="PeriodicTimer"/> while the page is open (the circuit's timer, not the browser's). A refresh that fails
/// shows its error in words and the next one tries again; nothing blocks the page meanwhile.
/// </summary>
public abstract class LivePage : ComponentBase, IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    /// <summary>How often the page refreshes.</summary>
    protected virtual TimeSpan Period => TimeSpan.FromSeconds(1);

    /// <summary>The last refresh's error, in words; null when it worked.</summary>
    protected string? LoadError { get; private set; }

    /// <summary>Whether a refresh has completed yet.</summary>
    protected bool Loaded { get; private set; }

    /// <summary>Reads what the page shows.</summary>
    protected abstract Task RefreshAsync();

    protected override async Task OnInitializedAsync()
    {
        await RefreshOnceAsync();
        _loop = LoopAsync(_stop.Token);
    }

    /// <summary>Refreshes now (after an action) and re-renders.</summary>
    protected async Task RefreshOnceAsync()
    {
        try
        {
            await RefreshAsync();
            LoadError = null;
        }
        catch (MedServeException e)
        {
            LoadError = e.Message;
        }
        Loaded = true;
    }

    private async Task LoopAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(Period);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                await InvokeAsync(async () =>
                {
                    await RefreshOnceAsync();
                    StateHasChanged();
                });
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public virtual async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            await _loop;
        }
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }
}
