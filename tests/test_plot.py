import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dgm_course import plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_image_grid_shapes_and_ax():
    fig = plot.image_grid(torch.rand(10, 1, 28, 28), nrow=5, title="samples")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2 * 29 + 1, 5 * 29 + 1)
    fig2, ax = plt.subplots()
    assert plot.image_grid(torch.rand(3, 8, 8), ax=ax) is fig2
    with pytest.raises(ValueError, match=r"\(N, H, W\).*got shape \(3, 28\)"):
        plot.image_grid(torch.rand(3, 28))


def test_scatter_and_density():
    fig = plot.scatter_2d(torch.randn(100, 2), title="x")
    assert fig.axes[0].get_xlim() == (-4, 4)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot.scatter_2d(torch.randn(100, 3))
    normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    fig, ax = plt.subplots()
    assert plot.density_2d(normal.log_prob, ax=ax, n=50) is fig
    heat = ax.images[0].get_array()
    assert heat.shape == (50, 50) and heat.max() == pytest.approx(1 / (2 * torch.pi), rel=0.01)
    with pytest.raises(ValueError, match=r"shape \(M,\)"):
        plot.density_2d(lambda x: x, n=10)


def test_grid_2d_cell_area():
    pts, area = plot.grid_2d(lim=1.0, n=3)
    assert pts.shape == (9, 2) and area == pytest.approx(1.0)
    with pytest.raises(ValueError):
        plot.grid_2d(n=1)


def test_curves():
    fig = plot.curves({"train_loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2]}, logy=True)
    assert [line.get_label() for line in fig.axes[0].lines] == ["train_loss", "val_loss"]
    with pytest.raises(TypeError, match="mapping"):
        plot.curves([1, 2, 3])


def test_samples_beside_real_draws_one_grid_per_panel_and_refuses_too_few():
    fig = plot.samples_beside_real({"A": torch.rand(70, 784), "B": torch.rand(64, 1, 28, 28)}, torch.rand(64, 28, 28))
    assert [ax.get_title() for ax in fig.axes] == ["real digits", "A", "B"]
    assert fig.axes[1].images[0].get_array().shape == fig.axes[0].images[0].get_array().shape
    with pytest.raises(ValueError, match="'samples' has only 10"):
        plot.samples_beside_real(torch.rand(10, 28, 28), torch.rand(64, 28, 28))
    fig = plot.samples_beside_real(torch.rand(64, 3, 3), torch.rand(64, 3, 3), real_title="training images")
    assert [ax.get_title() for ax in fig.axes] == ["training images", "samples"]
